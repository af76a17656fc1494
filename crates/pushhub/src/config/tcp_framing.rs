//! `tcp_framing`: how raw TCP frames are delimited, as a name (`"lines"`, `"length"`) or
//! as a table of Swoole's own settings, so a Swoole server's `$serv->set([...])` moves
//! into the configuration key for key and its clients' bytes work unchanged:
//!
//! ```toml
//! [tcp_framing]            # Swoole's EOF protocol
//! open_eof_check = true
//! package_eof = "\r\n"
//!
//! [tcp_framing]            # or its fixed header protocol
//! open_length_check = true
//! package_length_type = "N"
//! package_length_offset = 0
//! package_body_offset = 4
//! package_max_length = 81920
//! ```

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::transport::tcp::framing::{Eof, LengthField, LengthHeader};
use crate::transport::tcp::Framing;

/// `tcp_framing` before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RawTcpFraming {
    /// `"lines"`: newline-delimited JSON.
    #[default]
    Lines,
    /// `"length"`: a 4-byte big-endian length before each payload.
    Length,
    /// A table of Swoole's settings.
    Swoole(SwoolePackage),
}

/// Swoole's packet settings, under their Swoole names and with Swoole's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SwoolePackage {
    /// Frames end with `package_eof`.
    pub open_eof_check: bool,
    /// Accepted as Swoole has it; pushhub always hands its dialect one frame per delimiter.
    pub open_eof_split: bool,
    /// The delimiter: 1 to 8 bytes with a control character (`"\r\n"`, `"\n"`, `"\u0000"`).
    pub package_eof: Option<String>,
    /// Frames start with a header that holds their length.
    pub open_length_check: bool,
    /// The length field, as a PHP `pack` letter: `n`/`N` (2/4 bytes, big-endian) or
    /// `v`/`V` (2/4 bytes, little-endian). Default `N`.
    pub package_length_type: Option<String>,
    /// Where the length field starts in the header.
    pub package_length_offset: usize,
    /// Where the length starts counting: 0 counts the whole packet, header included;
    /// the header's size counts the body only.
    pub package_body_offset: usize,
    /// Most bytes of one packet a client may send, header or delimiter included.
    pub package_max_length: Option<usize>,
}

impl Serialize for RawTcpFraming {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Lines => serializer.serialize_str("lines"),
            Self::Length => serializer.serialize_str("length"),
            Self::Swoole(package) => package.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for RawTcpFraming {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match toml::Value::deserialize(deserializer)? {
            toml::Value::String(name) if name == "lines" => Ok(Self::Lines),
            toml::Value::String(name) if name == "length" => Ok(Self::Length),
            toml::Value::Table(table) => table
                .try_into()
                .map(Self::Swoole)
                .map_err(|e| D::Error::custom(e.message().to_owned())),
            other => Err(D::Error::custom(format!(
                "{other} is not a framing: expected \"lines\", \"length\" or a table of Swoole settings (open_eof_check and package_eof, or open_length_check and package_length_type)"
            ))),
        }
    }
}

/// A setting that is wrong: its key under `tcp_framing` (or elsewhere, a full path) and why.
pub type FramingError = (Vec<&'static str>, String);

/// The framing `raw` describes. A server message may take `max_body_bytes` (the largest
/// push) and `overhead` (its frame around it), which a 2-byte length field must be able
/// to carry.
pub fn framing(
    raw: &RawTcpFraming,
    max_body_bytes: usize,
    overhead: usize,
) -> Result<Framing, FramingError> {
    let package = match raw {
        RawTcpFraming::Lines => return Ok(Framing::Lines),
        RawTcpFraming::Length => return Ok(Framing::Length(LengthHeader::default())),
        RawTcpFraming::Swoole(package) => package,
    };
    let at = |key: &'static str| vec!["tcp_framing", key];
    match (package.open_eof_check, package.open_length_check) {
        (true, true) => Err((
            at("open_length_check"),
            "set open_eof_check or open_length_check, not both".into(),
        )),
        (false, false) => Err((
            vec!["tcp_framing"],
            "set open_eof_check = true (with package_eof) or open_length_check = true (with package_length_type)".into(),
        )),
        (true, false) => {
            if package.package_length_type.is_some()
                || package.package_length_offset != 0
                || package.package_body_offset != 0
            {
                return Err((
                    at("open_eof_check"),
                    "package_length_* and package_body_offset are settings of open_length_check"
                        .into(),
                ));
            }
            let Some(eof) = &package.package_eof else {
                return Err((
                    at("package_eof"),
                    "open_eof_check needs the delimiter, such as package_eof = \"\\r\\n\"".into(),
                ));
            };
            Eof::new(eof.as_bytes(), package.package_max_length)
                .map(Framing::Eof)
                .map_err(|why| (at("package_eof"), why))
        }
        (false, true) => {
            if package.package_eof.is_some() || package.open_eof_split {
                return Err((
                    at("open_length_check"),
                    "package_eof and open_eof_split are settings of open_eof_check".into(),
                ));
            }
            let letter = package.package_length_type.as_deref().unwrap_or("N");
            let field = length_field(letter).map_err(|why| (at("package_length_type"), why))?;
            let header = LengthHeader::new(
                field,
                package.package_length_offset,
                package.package_body_offset,
                package.package_max_length,
            )
            .map_err(|why| (at("package_body_offset"), why))?;
            let carried = field.max_value() + package.package_body_offset - header.header_len();
            if max_body_bytes.saturating_add(overhead) > carried {
                return Err((
                    vec!["limits", "max_body_bytes"],
                    format!(
                        "package_length_type = {letter:?} carries at most {carried} bytes after the header, and a message may take {max_body_bytes} (the largest push) + {overhead} (its frame): set limits.max_body_bytes to at most {}, or use a 4-byte type (N or V)",
                        carried.saturating_sub(overhead)
                    ),
                ));
            }
            Ok(Framing::Length(header))
        }
    }
}

fn length_field(letter: &str) -> Result<LengthField, String> {
    match letter {
        "n" => Ok(LengthField::U16Be),
        "N" => Ok(LengthField::U32Be),
        "v" => Ok(LengthField::U16Le),
        "V" => Ok(LengthField::U32Le),
        "s" | "S" | "l" | "L" => Err(format!(
            "{letter:?} is in the byte order of the machine that runs the server; name the order: v or V (little-endian, what it meant on x86 and ARM), n or N (big-endian)"
        )),
        "c" | "C" => Err(format!(
            "{letter:?} is a 1-byte length, which pushhub does not take: use n, N, v or V"
        )),
        other => Err(format!(
            "{other:?} is not a length type: use n or N (2 or 4 bytes, big-endian) or v or V (2 or 4 bytes, little-endian)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Framing, FramingError> {
        #[derive(Deserialize)]
        struct Doc {
            tcp_framing: RawTcpFraming,
        }
        let doc: Doc = toml::from_str(text).map_err(|e| (vec![], e.to_string()))?;
        framing(&doc.tcp_framing, 1 << 20, 4096)
    }

    #[test]
    fn the_seeds_settings_load_as_written() {
        let eof = parse(
            "[tcp_framing]\nopen_eof_check = true\npackage_eof = \"\\r\\n\"\nopen_eof_split = true\n",
        )
        .unwrap();
        assert_eq!(eof, Framing::Eof(Eof::new(b"\r\n", None).unwrap()));
        let length = parse(
            "[tcp_framing]\nopen_length_check = true\npackage_length_type = \"N\"\npackage_length_offset = 0\npackage_body_offset = 4\npackage_max_length = 81920\n",
        )
        .unwrap();
        assert_eq!(
            length,
            Framing::Length(LengthHeader::new(LengthField::U32Be, 0, 4, Some(81920)).unwrap())
        );
        assert_eq!(
            parse("tcp_framing = \"length\"").unwrap(),
            Framing::Length(LengthHeader::default())
        );
    }

    #[test]
    fn mistakes_name_their_key() {
        let key = |text: &str| parse(text).unwrap_err();
        let (path, why) = key("[tcp_framing]\nopen_eof_check = true\npackage_eof = \"#END#\"\n");
        assert_eq!(path, ["tcp_framing", "package_eof"]);
        assert!(why.contains("control character"), "{why}");
        let (path, why) =
            key("[tcp_framing]\nopen_length_check = true\npackage_length_type = \"L\"\n");
        assert_eq!(path, ["tcp_framing", "package_length_type"]);
        assert!(why.contains("V"), "{why}");
        let (path, _) = key("[tcp_framing]\nopen_length_check = true\npackage_body_offset = 2\n");
        assert_eq!(path, ["tcp_framing", "package_body_offset"]);
        let (path, why) =
            key("[tcp_framing]\nopen_length_check = true\npackage_length_type = \"n\"\n");
        assert_eq!(path, ["limits", "max_body_bytes"]);
        assert!(why.contains("max_body_bytes to at most 61437"), "{why}");
        let (path, _) = key("[tcp_framing]\npackage_eof = \"\\n\"\n");
        assert_eq!(path, ["tcp_framing"]);
        let (_, why) = key("[tcp_framing]\nopen_eof_check = true\npackage_eol = \"\\n\"\n");
        assert!(why.contains("package_eol"), "{why}");
        let (_, why) = key("tcp_framing = \"json\"");
        assert!(why.contains("lines"), "{why}");
    }
}
