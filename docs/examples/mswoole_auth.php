<?php
// The `auth` string an MSwoole backend (seed 001) hands its WebSocket clients: the user's
// id, type, room code, nickname and the time, as JSON, encrypted the way MSwoole's
// \Encrypt::des($json, $key) does it, which \Encrypt::undes($auth, $key) (and pushhub's
// auth = "mswoole-des") reverses:
//
//   key    right-padded with '0' to 24 bytes (mcrypt uses no more than 24)
//   cipher Triple DES (EDE3), ECB mode, PKCS#5 padding
//   text   base64 with '+', '/', '=' written as '*', ':', '_' (safe in a URL)
//
// MSwoole used the mcrypt extension (PHP 5/7.0, php-mcrypt from PECL since); --openssl
// makes the same string with OpenSSL, for PHP 7.2 and later without mcrypt.
//
// Usage: php mswoole_auth.php [--openssl] KEY ID TYPE CODE NICKNAME [CTIME]
//   php docs/examples/mswoole_auth.php kfw001-websocket 1001 wechatUser room-7 Ann
// CTIME defaults to now (Unix seconds). Prints the string, ready for ?auth=.
//
// The format has no integrity check and one shared key: use it only while moving the
// backend to signed tokens (docs/security.md).

$args = array_slice($argv, 1);
$engine = 'mcrypt';
if (($args[0] ?? '') === '--openssl') {
    $engine = 'openssl';
    array_shift($args);
}
if (count($args) < 5) {
    fwrite(STDERR, "usage: php mswoole_auth.php [--openssl] KEY ID TYPE CODE NICKNAME [CTIME]\n");
    exit(2);
}
[$key, $id, $type, $code, $nickname] = $args;
$ctime = isset($args[5]) ? (int) $args[5] : time();

// An MSwoole backend built the auth from its user row: numeric ids are integers.
$user = [
    'id' => ctype_digit($id) ? (int) $id : $id,
    'type' => $type,
    'code' => $code,
    'nickname' => $nickname,
    'ctime' => $ctime,
];
$plain = json_encode($user);
$key = str_pad($key, 24, '0');

if ($engine === 'mcrypt') {
    if (!extension_loaded('mcrypt')) {
        fwrite(STDERR, "the mcrypt extension is not loaded (apt-get install php-mcrypt), or pass --openssl\n");
        exit(3);
    }
    $block = mcrypt_get_block_size(MCRYPT_3DES, 'ecb');
    $pad = $block - strlen($plain) % $block;
    $td = mcrypt_module_open(MCRYPT_3DES, '', 'ecb', '');
    // ECB takes no IV; a longer key is cut to 24 bytes with a warning, as in MSwoole.
    @mcrypt_generic_init($td, $key, str_repeat("\0", mcrypt_enc_get_iv_size($td)));
    $raw = mcrypt_generic($td, $plain . str_repeat(chr($pad), $pad));
    mcrypt_generic_deinit($td);
    mcrypt_module_close($td);
} else {
    $raw = openssl_encrypt($plain, 'des-ede3', substr($key, 0, 24), OPENSSL_RAW_DATA);
    if ($raw === false) {
        fwrite(STDERR, "openssl_encrypt failed: " . openssl_error_string() . "\n");
        exit(3);
    }
}

echo strtr(base64_encode($raw), '+/=', '*:_'), "\n";
