//! MAAS 2.0 request parameters (`http::maas::params::Params::parse`): the query string, the
//! Content-Type and the body (urlencoded or multipart/form-data, base64 parts) of any request
//! to /MAAS/api/2.0/, read before OAuth is checked. Never panics, whatever the accessors ask.
//!
//! Input: query, Content-Type and body separated by "\n\n\n" (the seeds are real requests).
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use rackbox::http::maas::params::{Params, parse_bool};

fuzz_target!(|data: &[u8]| {
    let parts = common::split(data, b"\n\n\n", 3);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (query, content_type, body) = match parts.as_slice() {
        [q, ct, body] => (Some(text(q)), Some(text(ct)), *body),
        [ct, body] => (None, Some(text(ct)), *body),
        [body] => (None, None, *body),
        _ => unreachable!(),
    };
    let Ok(params) = Params::parse(query.as_deref(), content_type.as_deref(), body) else {
        return;
    };
    let _ = params.op();
    let names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
    for name in names.iter().take(8) {
        assert!(params.has(name));
        let _ = params.bytes(name);
        let _ = params.text(name);
        let _ = params.nonempty(name);
        let _ = params.required(name);
        let _ = params.all(name);
        let _ = params.list(name);
        let _ = params.boolean(name);
        let _ = params.number(name);
        if let Ok(Some(t)) = params.text(name) {
            let _ = parse_bool(&t);
        }
    }
});
