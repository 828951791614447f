//! OAuth 1.0a PLAINTEXT, the way MAAS clients send it: an `Authorization: OAuth k="v", ...` header
//! whose signature is `<consumer secret>&<token secret>`, percent-encoded, with an empty consumer
//! secret. Pure: header text in, credentials out. The service checks them.

/// The credentials one request carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthCredentials {
    pub consumer_key: String,
    pub token_key: String,
    /// The token secret, taken from the decoded signature `&<secret>`.
    pub token_secret: String,
}

/// Why an Authorization header is not usable MAAS credentials. Each message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error(
        "the Authorization header must be 'OAuth ...' (OAuth 1.0a PLAINTEXT with a MAAS API key)"
    )]
    NotOAuth,
    #[error("the OAuth header is malformed near {0:?}")]
    Malformed(String),
    #[error("the OAuth header has no {0}")]
    Missing(&'static str),
    #[error("oauth_signature_method {0:?} is not supported; use PLAINTEXT")]
    UnsupportedMethod(String),
    #[error("the OAuth signature must be '&<token secret>' (the consumer secret is empty)")]
    BadSignature,
}

/// Parses `OAuth realm="OAuth", oauth_consumer_key="ck", ...`: `k="v"` pairs in any order,
/// separated by commas and/or spaces, values percent-decoded (gomaasapi query-escapes them).
/// Realm, nonce, timestamp and version are ignored: PLAINTEXT over the appliance's own network
/// has no replay protection to offer, and MAAS itself does not check them either.
pub fn parse_authorization(header: &str) -> Result<OAuthCredentials, OAuthError> {
    let header = header.trim();
    let rest = match header.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("oauth") => rest,
        _ => return Err(OAuthError::NotOAuth),
    };
    let mut consumer_key = None;
    let mut token_key = None;
    let mut signature = None;
    let mut method = None;
    let mut text = rest.trim_start();
    while !text.is_empty() {
        let (key, after_key) = text
            .split_once('=')
            .ok_or_else(|| OAuthError::Malformed(text.chars().take(20).collect()))?;
        let key = key.trim();
        let after_key = after_key.trim_start();
        let (raw, remainder) = if let Some(quoted) = after_key.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| OAuthError::Malformed(key.to_string()))?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            // Unquoted values run to the next comma (lenient: some hand-made clients do this).
            match after_key.find(',') {
                Some(end) => (&after_key[..end], &after_key[end..]),
                None => (after_key, ""),
            }
        };
        let value = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| OAuthError::Malformed(key.to_string()))?
            .into_owned();
        match key {
            "oauth_consumer_key" => consumer_key = Some(value),
            "oauth_token" => token_key = Some(value),
            "oauth_signature" => signature = Some(value),
            "oauth_signature_method" => method = Some(value),
            _ => {}
        }
        text = remainder.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
    }
    if let Some(m) = method
        && !m.eq_ignore_ascii_case("PLAINTEXT")
    {
        return Err(OAuthError::UnsupportedMethod(m));
    }
    let consumer_key = consumer_key.ok_or(OAuthError::Missing("oauth_consumer_key"))?;
    let token_key = token_key.ok_or(OAuthError::Missing("oauth_token"))?;
    let signature = signature.ok_or(OAuthError::Missing("oauth_signature"))?;
    // PLAINTEXT signature: percent-encoded consumer secret (empty) '&' percent-encoded token
    // secret. The header value was decoded once above; the secret may be encoded once more.
    let secret = signature
        .strip_prefix('&')
        .ok_or(OAuthError::BadSignature)?;
    let token_secret = percent_encoding::percent_decode_str(secret)
        .decode_utf8()
        .map_err(|_| OAuthError::BadSignature)?
        .into_owned();
    if token_secret.is_empty() {
        return Err(OAuthError::BadSignature);
    }
    Ok(OAuthCredentials {
        consumer_key,
        token_key,
        token_secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(ck: &str, tk: &str, ts: &str) -> OAuthCredentials {
        OAuthCredentials {
            consumer_key: ck.into(),
            token_key: tk.into(),
            token_secret: ts.into(),
        }
    }

    #[test]
    fn python_libmaas_header() {
        let h = r#"OAuth realm="OAuth", oauth_nonce="1234", oauth_timestamp="1700000000", oauth_version="1.0", oauth_signature_method="PLAINTEXT", oauth_consumer_key="ck", oauth_token="tk", oauth_signature="%26ts""#;
        assert_eq!(parse_authorization(h), Ok(creds("ck", "tk", "ts")));
    }

    #[test]
    fn gomaasapi_header_any_order() {
        let h = r#"OAuth oauth_token="tk", oauth_signature="%26ts", realm="MAAS+API", oauth_consumer_key="ck", oauth_signature_method="PLAINTEXT", oauth_nonce="n", oauth_timestamp="1""#;
        assert_eq!(parse_authorization(h), Ok(creds("ck", "tk", "ts")));
    }

    #[test]
    fn unescaped_ampersand_and_no_commas() {
        let h = r#"OAuth oauth_consumer_key="ck" oauth_token="tk" oauth_signature="&ts""#;
        assert_eq!(parse_authorization(h), Ok(creds("ck", "tk", "ts")));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            parse_authorization("Bearer rbx_x_y"),
            Err(OAuthError::NotOAuth)
        );
        assert_eq!(
            parse_authorization(r#"OAuth oauth_consumer_key="ck", oauth_signature="%26ts""#),
            Err(OAuthError::Missing("oauth_token"))
        );
        assert_eq!(
            parse_authorization(
                r#"OAuth oauth_consumer_key="ck", oauth_token="t", oauth_signature="ts""#
            ),
            Err(OAuthError::BadSignature)
        );
        assert!(matches!(
            parse_authorization(
                r#"OAuth oauth_signature_method="HMAC-SHA1", oauth_consumer_key="ck", oauth_token="t", oauth_signature="%26x""#
            ),
            Err(OAuthError::UnsupportedMethod(_))
        ));
        assert!(matches!(
            parse_authorization(r#"OAuth oauth_token="unterminated"#),
            Err(OAuthError::Malformed(_))
        ));
    }
}
