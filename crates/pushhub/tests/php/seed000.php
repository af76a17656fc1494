<?php
// Seed 000 (jdserver): the backend calls of its documentation, run by PHP against a real
// pushhub (tests/it/php.rs). The calls are the seed's, as written, with two changes a
// user makes when switching: the host and port (jdserver's `localhost:8081` is pushhub's
// API listener, `$api` from PUSHHUB_API), and the echo service they call back
// (`http://oliveche.com/echo.php`, `$echo` from ECHO_URL). The seed's third example
// writes `[a=>1, b=>2]`, bare words PHP 8 refuses ("Undefined constant"); it is
// `["a"=>1, "b"=>2]` here, what PHP 5 read it as.
//
// Prints one line per call: the call's name, a tab, the answer's body.

$api = getenv('PUSHHUB_API');
$echo = getenv('ECHO_URL');

// jdserver's helper: POST the parameters form-encoded (http_build_query) when there are
// any, else GET; the answer's body.
function httpCall($url, $postParams = null)
{
    if (!preg_match('/^https?:/', $url)) {
        $url = "http://" . $url;
    }
    $h = curl_init($url);
    curl_setopt($h, CURLOPT_RETURNTRANSFER, true);
    if ($postParams !== null) {
        curl_setopt($h, CURLOPT_POST, true);
        curl_setopt($h, CURLOPT_POSTFIELDS, http_build_query($postParams));
    }
    $body = curl_exec($h);
    if ($body === false) {
        fwrite(STDERR, "$url: " . curl_error($h) . "\n");
        exit(1);
    }
    $status = curl_getinfo($h, CURLINFO_RESPONSE_CODE);
    if ($status != 200) {
        fwrite(STDERR, "$url: HTTP $status $body\n");
        exit(1);
    }
    return $body;
}

// jdserver's helper: a URL with query parameters.
function makeUrl($url, $params)
{
    return $url . (strpos($url, '?') === false ? '?' : '&') . http_build_query($params);
}

echo "push\t", httpCall("$api/push", [
	"app" => "wms",
	"user" => "*",
	"msg" => ["id"=>1, "text"=>"订单10待审批"]
]), "\n";

echo "getUsers\t", httpCall("$api/getUsers?app=wms"), "\n";

echo "setTimeout get\t", httpCall("$api/setTimeout", [
	"url" => "$echo?a=1&b=2"
]), "\n";

echo "setTimeout form\t", httpCall("$api/setTimeout", [
	"url" => makeUrl($echo, ["a"=>1, "b"=>2]),
	"data" => ["c"=>3, "d"=>4]
]), "\n";

echo "setTimeout json\t", httpCall("$api/setTimeout", [
	"url" => makeUrl($echo, ["a"=>1, "b"=>2]),
	"data" => ["c"=>3, "d"=>4],
	"headers" => [
		"Content-Type: application/json",
		"Authorization: Basic dGVzdDp0ZXN0MTIz",
	]
]), "\n";
