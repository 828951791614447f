//! The MAAS OAuth 1.0a PLAINTEXT Authorization header (`http::maas::oauth::parse_authorization`),
//! read from every anonymous request to the MAAS face: never panics; credentials it accepts
//! are non-empty where the service needs them, and a header rebuilt from them parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackbox::http::maas::oauth::parse_authorization;

fn enc(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(creds) = parse_authorization(header) else {
        return;
    };
    assert!(!creds.token_secret.is_empty());
    let rebuilt = format!(
        "OAuth oauth_consumer_key=\"{}\", oauth_token=\"{}\", oauth_signature_method=\"PLAINTEXT\", oauth_signature=\"%26{}\"",
        enc(&creds.consumer_key),
        enc(&creds.token_key),
        enc(&enc(&creds.token_secret)),
    );
    assert_eq!(
        parse_authorization(&rebuilt).expect("rebuilt header parses"),
        creds
    );
});
