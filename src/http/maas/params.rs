//! Request parameters as MAAS clients send them: the query string (python-libmaas puts `op` and
//! every GET argument there), and a body that is `multipart/form-data` (python-libmaas, always,
//! each part base64 transfer-encoded) or `application/x-www-form-urlencoded` (gomaasapi). Keys
//! repeat for lists (`mac_addresses=a&mac_addresses=b`). Pure: bytes in, parameters out.

use base64::Engine;

/// One parameter: a name and its raw value (a file upload keeps its bytes as they came).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: Vec<u8>,
    /// The part's filename, for multipart file uploads.
    pub filename: Option<String>,
}

/// Why a request's parameters cannot be read. Answered as 400 text/plain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error(
        "unsupported Content-Type {0:?}: send multipart/form-data or application/x-www-form-urlencoded"
    )]
    ContentType(String),
    #[error("malformed multipart body: {0}")]
    Multipart(String),
    #[error("{name}: {why}")]
    Invalid { name: String, why: String },
}

impl ParamError {
    pub fn invalid(name: &str, why: impl Into<String>) -> ParamError {
        ParamError::Invalid {
            name: name.to_string(),
            why: why.into(),
        }
    }
}

/// Every parameter of one request, in the order they came (query string first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<Param>,
}

impl Params {
    /// Reads the query string and the body.
    pub fn parse(
        query: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Params, ParamError> {
        let mut pairs = Vec::new();
        if let Some(q) = query {
            pairs.extend(urlencoded(q.as_bytes()));
        }
        if !body.iter().all(u8::is_ascii_whitespace) {
            let ct = content_type.unwrap_or("").trim();
            let essence = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match essence.as_str() {
                "application/x-www-form-urlencoded" | "" => pairs.extend(urlencoded(body)),
                "multipart/form-data" => {
                    let boundary = boundary(ct).ok_or_else(|| {
                        ParamError::Multipart("the Content-Type has no boundary".into())
                    })?;
                    pairs.extend(multipart(body, &boundary)?);
                }
                _ => return Err(ParamError::ContentType(ct.to_string())),
            }
        }
        Ok(Params { pairs })
    }

    /// Builds parameters from name/value text pairs (tests, internal calls).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Params {
        Params {
            pairs: pairs
                .into_iter()
                .map(|(n, v)| Param {
                    name: n.to_string(),
                    value: v.as_bytes().to_vec(),
                    filename: None,
                })
                .collect(),
        }
    }

    /// The operation: the first non-empty `op`. An empty `op` (gomaasapi's `?op=` on create)
    /// means no operation, i.e. the RESTful action.
    pub fn op(&self) -> Option<String> {
        self.pairs
            .iter()
            .filter(|p| p.name == "op")
            .map(|p| String::from_utf8_lossy(&p.value).trim().to_string())
            .find(|v| !v.is_empty())
    }

    /// Every parameter.
    pub fn iter(&self) -> impl Iterator<Item = &Param> {
        self.pairs.iter()
    }

    /// The raw value of `name` (the last one when repeated, as Django reads forms).
    pub fn bytes(&self, name: &str) -> Option<&Param> {
        self.pairs.iter().rev().find(|p| p.name == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|p| p.name == name)
    }

    /// The text value of `name`, or None when absent.
    pub fn text(&self, name: &str) -> Result<Option<String>, ParamError> {
        match self.bytes(name) {
            None => Ok(None),
            Some(p) => utf8(name, &p.value).map(Some),
        }
    }

    /// The text value of `name`, absent when missing or empty (MAAS treats both alike).
    pub fn nonempty(&self, name: &str) -> Result<Option<String>, ParamError> {
        Ok(self
            .text(name)?
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()))
    }

    pub fn required(&self, name: &str) -> Result<String, ParamError> {
        self.nonempty(name)?
            .ok_or_else(|| ParamError::invalid(name, "this field is required"))
    }

    /// Every value of a repeated key, in order, empty values dropped.
    pub fn all(&self, name: &str) -> Result<Vec<String>, ParamError> {
        let mut out = Vec::new();
        for p in self.pairs.iter().filter(|p| p.name == name) {
            let v = utf8(name, &p.value)?;
            let v = v.trim();
            if !v.is_empty() {
                out.push(v.to_string());
            }
        }
        Ok(out)
    }

    /// Every value of a list key, also splitting comma-separated values (`tags=a,b` and
    /// `tags=a&tags=b` both mean two tags in MAAS).
    pub fn list(&self, name: &str) -> Result<Vec<String>, ParamError> {
        Ok(self
            .all(name)?
            .iter()
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect())
    }

    /// A boolean: true/false, 1/0, yes/no, on/off (any case). Absent or empty is None.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ParamError> {
        match self.nonempty(name)? {
            None => Ok(None),
            Some(v) => parse_bool(&v).map(Some).ok_or_else(|| {
                ParamError::invalid(name, format!("{v:?} is not a boolean (true or false)"))
            }),
        }
    }

    /// A whole number. Accepts "4096.0" (python-libmaas sends floats for memory) when it is
    /// whole; rounds a fractional one up, as a minimum ("at least 1.5 GiB" needs 2).
    pub fn number(&self, name: &str) -> Result<Option<u64>, ParamError> {
        match self.nonempty(name)? {
            None => Ok(None),
            Some(v) => {
                if let Ok(n) = v.parse::<u64>() {
                    return Ok(Some(n));
                }
                match v.parse::<f64>() {
                    Ok(f) if f.is_finite() && f >= 0.0 && f <= u64::MAX as f64 => {
                        Ok(Some(f.ceil() as u64))
                    }
                    _ => Err(ParamError::invalid(
                        name,
                        format!("{v:?} is not a non-negative number"),
                    )),
                }
            }
        }
    }
}

pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn utf8(name: &str, bytes: &[u8]) -> Result<String, ParamError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ParamError::invalid(name, "the value is not UTF-8 text"))
}

fn urlencoded(bytes: &[u8]) -> impl Iterator<Item = Param> + '_ {
    form_urlencoded::parse(bytes).map(|(k, v)| Param {
        name: k.into_owned(),
        value: v.into_owned().into_bytes(),
        filename: None,
    })
}

/// The `boundary` parameter of a multipart Content-Type, unquoted.
fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        (!v.is_empty()).then(|| v.to_string())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Splits a multipart/form-data body (RFC 7578) into its parts.
fn multipart(body: &[u8], boundary: &str) -> Result<Vec<Param>, ParamError> {
    let bad = |why: &str| ParamError::Multipart(why.to_string());
    let open = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    let first = find(body, open.as_bytes()).ok_or_else(|| bad("no opening boundary"))?;
    let mut rest = &body[first + open.len()..];
    let mut params = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(params);
        }
        // Transport padding after a boundary, then its line break.
        let line_end = find(rest, b"\r\n").ok_or_else(|| bad("a boundary line has no CRLF"))?;
        if !rest[..line_end].iter().all(|b| *b == b' ' || *b == b'\t') {
            return Err(bad("text after a boundary"));
        }
        rest = &rest[line_end + 2..];
        let end = find(rest, delimiter.as_bytes())
            .ok_or_else(|| bad("a part is not closed by a boundary"))?;
        let part = &rest[..end];
        // An empty multipart message (python-libmaas sends one for a POST without
        // parameters) has one empty part.
        if !part.iter().all(u8::is_ascii_whitespace) {
            params.push(part_param(part)?);
        }
        rest = &rest[end + delimiter.len()..];
    }
}

/// One part: headers, a blank line, the content (decoded from its transfer encoding).
fn part_param(part: &[u8]) -> Result<Param, ParamError> {
    let bad = |why: String| ParamError::Multipart(why);
    let (head, content) = if part.starts_with(b"\r\n") {
        (&part[..0], &part[2..])
    } else {
        let split =
            find(part, b"\r\n\r\n").ok_or_else(|| bad("a part has no header end".into()))?;
        (&part[..split], &part[split + 4..])
    };
    let head = std::str::from_utf8(head).map_err(|_| bad("part headers are not UTF-8".into()))?;
    let mut name = None;
    let mut filename = None;
    let mut encoding = String::new();
    for line in head.split("\r\n").filter(|l| !l.trim().is_empty()) {
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("part header line {line:?} has no ':'")))?;
        match key.trim().to_ascii_lowercase().as_str() {
            "content-disposition" => {
                for (k, v) in header_params(value) {
                    match k.as_str() {
                        "name" => name = Some(v),
                        "filename" => filename = Some(v),
                        _ => {}
                    }
                }
            }
            "content-transfer-encoding" => encoding = value.trim().to_ascii_lowercase(),
            _ => {}
        }
    }
    let name = name.ok_or_else(|| bad("a part has no name in Content-Disposition".into()))?;
    let value = match encoding.as_str() {
        "" | "7bit" | "8bit" | "binary" => content.to_vec(),
        "base64" => {
            let compact: Vec<u8> = content
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(&compact)
                .map_err(|e| bad(format!("part {name:?} is not valid base64: {e}")))?
        }
        other => {
            return Err(bad(format!(
                "part {name:?} uses transfer encoding {other:?}; use base64 or none"
            )));
        }
    };
    Ok(Param {
        name,
        value,
        filename,
    })
}

/// `form-data; name="a"; filename="b"` -> [("name","a"), ("filename","b")]. Quoted values may
/// hold ';' and backslash-escaped quotes.
fn header_params(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    // Skip the disposition type.
    for c in chars.by_ref() {
        if c == ';' {
            break;
        }
    }
    loop {
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() {
            return out;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
            for c in chars.by_ref() {
                if c == ';' {
                    break;
                }
            }
        } else {
            for c in chars.by_ref() {
                if c == ';' {
                    break;
                }
                val.push(c);
            }
            val = val.trim().to_string();
        }
        out.push((key, val));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_urlencoded_with_repeats() {
        let p = Params::parse(
            Some("op=allocate&tags=a"),
            Some("application/x-www-form-urlencoded"),
            b"tags=b,c&mac_addresses=52%3A54%3A00%3A00%3A00%3A01&mac_addresses=52:54:00:00:00:02&name=x+y",
        )
        .unwrap();
        assert_eq!(p.op().as_deref(), Some("allocate"));
        assert_eq!(p.list("tags").unwrap(), vec!["a", "b", "c"]);
        assert_eq!(
            p.all("mac_addresses").unwrap(),
            vec!["52:54:00:00:00:01", "52:54:00:00:00:02"]
        );
        assert_eq!(p.text("name").unwrap().as_deref(), Some("x y"));
    }

    #[test]
    fn empty_op_is_no_op() {
        let p = Params::parse(Some("op="), None, b"").unwrap();
        assert_eq!(p.op(), None);
    }

    #[test]
    fn booleans_and_numbers() {
        let p = Params::from_pairs([
            ("a", "true"),
            ("b", "0"),
            ("c", "False"),
            ("d", "maybe"),
            ("m", "4096.0"),
            ("n", "1.5"),
            ("x", "-1"),
        ]);
        assert_eq!(p.boolean("a").unwrap(), Some(true));
        assert_eq!(p.boolean("b").unwrap(), Some(false));
        assert_eq!(p.boolean("c").unwrap(), Some(false));
        assert!(p.boolean("d").is_err());
        assert_eq!(p.boolean("absent").unwrap(), None);
        assert_eq!(p.number("m").unwrap(), Some(4096));
        assert_eq!(p.number("n").unwrap(), Some(2));
        assert!(p.number("x").is_err());
    }

    /// The body python-libmaas builds with the email package: base64 parts, a quoted boundary.
    #[test]
    fn python_libmaas_multipart() {
        let body = b"--===============123==\r\nContent-Type: text/plain; charset=\"utf-8\"\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: form-data; name=\"hostname\"\r\n\r\naG9zdC0x\r\n--===============123==\r\nContent-Type: application/octet-stream\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: form-data; name=\"quick_erase\"\r\n\r\ndHJ1ZQ==\r\n--===============123==--";
        let p = Params::parse(
            Some("op=release"),
            Some("multipart/form-data; boundary=\"===============123==\""),
            body,
        )
        .unwrap();
        assert_eq!(p.text("hostname").unwrap().as_deref(), Some("host-1"));
        assert_eq!(p.boolean("quick_erase").unwrap(), Some(true));
        assert_eq!(p.op().as_deref(), Some("release"));
    }

    /// Go's mime/multipart writer (gomaasapi's file upload): raw parts, a filename.
    #[test]
    fn go_multipart_file() {
        let body = b"--abc\r\nContent-Disposition: form-data; name=\"filename\"\r\n\r\nagent.tgz\r\n--abc\r\nContent-Disposition: form-data; name=\"file\"; filename=\"file\"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\r\n--x\r\n--abc--\r\n";
        let p = Params::parse(None, Some("multipart/form-data; boundary=abc"), body).unwrap();
        assert_eq!(p.text("filename").unwrap().as_deref(), Some("agent.tgz"));
        let f = p.bytes("file").unwrap();
        assert_eq!(f.value, b"\x00\x01\r\n--x");
        assert_eq!(f.filename.as_deref(), Some("file"));
    }

    /// python-libmaas's body for a POST without parameters.
    #[test]
    fn empty_multipart_message() {
        let p = Params::parse(
            Some("op=power_on"),
            Some("multipart/form-data; boundary=\"==x==\""),
            b"--==x==\r\n\r\n--==x==--",
        )
        .unwrap();
        assert_eq!(p.op().as_deref(), Some("power_on"));
        assert_eq!(p.iter().count(), 1);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(matches!(
            Params::parse(None, Some("multipart/form-data"), b"x"),
            Err(ParamError::Multipart(_))
        ));
        assert!(matches!(
            Params::parse(
                None,
                Some("multipart/form-data; boundary=b"),
                b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end"
            ),
            Err(ParamError::Multipart(_))
        ));
        assert!(matches!(
            Params::parse(None, Some("multipart/form-data; boundary=b"), b"--b\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n!!!\r\n--b--"),
            Err(ParamError::Multipart(_))
        ));
        assert!(matches!(
            Params::parse(None, Some("application/json"), b"{}"),
            Err(ParamError::ContentType(_))
        ));
    }
}
