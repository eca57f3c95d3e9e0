//! RFC 7512 `pkcs11:` URIs for cairn's keys: `pkcs11:token=<label>;object=<label>;id=<%xx..>;type=private`.
//!
//! Parsing accepts the path attributes cairn uses (`token`, `object`, `id`, `type`) and ignores the
//! other standard ones (`manufacturer`, `model`, `serial`, `library-*`, `slot-*`) and vendor `x-`
//! attributes, as RFC 7512 §2.3 allows. Query attributes are refused except `module-path` (ignored:
//! the module comes from the environment): `pin-value` and `pin-source` would put a PIN where logs
//! and shell histories keep it, and cairn's PIN only ever comes from the custodians' shares.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use cairn_verifier::custody::KeyRole;

use crate::error::Error;

/// A parsed `pkcs11:` URI naming one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// `token`: the token label, if given.
    pub token: Option<String>,
    /// `object`: the object label (`CKA_LABEL`).
    pub object: String,
    /// `id`: `CKA_ID` bytes (empty when not given).
    pub id: Vec<u8>,
}

impl Pkcs11Uri {
    /// The URI of cairn key `role`/`generation` on token `token`.
    pub fn for_key(token: &str, role: KeyRole, generation: u8) -> Self {
        Self {
            token: Some(token.into()),
            object: format!("cairn-{}-{generation}", role.name()),
            id: vec![u8::try_from(role.code()).unwrap_or(u8::MAX), generation],
        }
    }
}

/// RFC 3986 unreserved characters plus the `pk11-res-avail` ones RFC 7512 allows unescaped in a
/// path attribute value.
fn unescaped(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b':'
                | b'['
                | b']'
                | b'@'
                | b'!'
                | b'$'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b'&'
        )
}

fn escape(out: &mut String, value: &[u8]) {
    for &b in value {
        if unescaped(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn escape_all(out: &mut String, value: &[u8]) {
    for &b in value {
        let _ = write!(out, "%{b:02X}");
    }
}

fn unescape(attr: &str, value: &str) -> Result<Vec<u8>, Error> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    Error::Uri(format!(
                        "attribute {attr}: bad percent-escape at byte {i} of {value:?}"
                    ))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

impl FromStr for Pkcs11Uri {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let rest = s
            .strip_prefix("pkcs11:")
            .ok_or_else(|| Error::Uri(format!("{s:?} does not start with \"pkcs11:\"")))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut token = None;
        let mut object = None;
        let mut id = None;
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr
                .split_once('=')
                .ok_or_else(|| Error::Uri(format!("path attribute {attr:?} has no '='")))?;
            let slot = match name {
                "token" => &mut token,
                "object" => &mut object,
                "id" => &mut id,
                "type" => {
                    if value != "private" {
                        return Err(Error::Uri(format!(
                            "type={value}: cairn signs with private keys (type=private)"
                        )));
                    }
                    continue;
                }
                "manufacturer"
                | "model"
                | "serial"
                | "library-manufacturer"
                | "library-description"
                | "library-version"
                | "slot-manufacturer"
                | "slot-description"
                | "slot-id" => continue,
                n if n.starts_with("x-") => continue,
                n => return Err(Error::Uri(format!("unknown path attribute {n:?}"))),
            };
            if slot.is_some() {
                return Err(Error::Uri(format!("attribute {name} given twice")));
            }
            *slot = Some(unescape(name, value)?);
        }
        for attr in query.split('&').filter(|a| !a.is_empty()) {
            let name = attr.split_once('=').map_or(attr, |(n, _)| n);
            match name {
                "module-path" | "module-name" => {}
                "pin-value" | "pin-source" => {
                    return Err(Error::Uri(format!(
                        "{name} is refused: the token PIN comes only from the custodians' shares"
                    )));
                }
                n => return Err(Error::Uri(format!("unknown query attribute {n:?}"))),
            }
        }
        let text = |name: &str, v: Vec<u8>| {
            String::from_utf8(v).map_err(|_| Error::Uri(format!("attribute {name} is not UTF-8")))
        };
        Ok(Self {
            token: token.map(|t| text("token", t)).transpose()?,
            object: text(
                "object",
                object.ok_or_else(|| Error::Uri(format!("{s:?} has no object attribute")))?,
            )?,
            id: id.unwrap_or_default(),
        })
    }
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::from("pkcs11:");
        if let Some(t) = &self.token {
            s.push_str("token=");
            escape(&mut s, t.as_bytes());
            s.push(';');
        }
        s.push_str("object=");
        escape(&mut s, self.object.as_bytes());
        if !self.id.is_empty() {
            s.push_str(";id=");
            escape_all(&mut s, &self.id);
        }
        s.push_str(";type=private");
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cairn_key_uris_round_trip() {
        let uri = Pkcs11Uri::for_key("cairn ceremony", KeyRole::Release, 1);
        let text = uri.to_string();
        assert_eq!(
            text,
            "pkcs11:token=cairn%20ceremony;object=cairn-release-1;id=%01%01;type=private"
        );
        assert_eq!(text.parse::<Pkcs11Uri>().unwrap(), uri);
    }

    #[test]
    fn rfc7512_examples_parse() {
        // RFC 7512 §3 examples, the ones naming one object.
        let u: Pkcs11Uri = "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=private;serial=".parse().unwrap();
        assert_eq!(u.token.as_deref(), Some("The Software PKCS#11 Softtoken"));
        assert_eq!(u.object, "my-certificate");
        let u: Pkcs11Uri = "pkcs11:object=my-sign-key;type=private?module-name=mypkcs11"
            .parse()
            .unwrap();
        assert_eq!(u.object, "my-sign-key");
        let u: Pkcs11Uri = "pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.;object=my-key;id=%01%02%aa;type=private".parse().unwrap();
        assert_eq!(u.id, vec![1, 2, 0xaa]);
    }

    #[test]
    fn bad_uris_are_refused_with_the_reason() {
        for (uri, why) in [
            ("pkcs12:object=a", "does not start"),
            ("pkcs11:token=a", "no object"),
            ("pkcs11:object=a;object=b", "given twice"),
            ("pkcs11:object=a%zz", "percent-escape"),
            ("pkcs11:object=a;type=public", "type=private"),
            ("pkcs11:object=a;colour=blue", "unknown path attribute"),
            ("pkcs11:object=a?pin-value=1234", "pin-value is refused"),
            (
                "pkcs11:object=a?pin-source=file:/pin",
                "pin-source is refused",
            ),
        ] {
            let err = uri.parse::<Pkcs11Uri>().unwrap_err().to_string();
            assert!(err.contains(why), "{uri}: {err}");
            assert!(!err.contains("1234"), "a PIN leaked into {err}");
        }
    }
}
