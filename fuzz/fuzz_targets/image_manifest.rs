//! Image manifests (`images::manifest`): what `POST /api/v1/images/sync` reads, inline or
//! fetched from a mirror's URL, through the checks each entry passes before an import starts
//! (URL, name, words, digest). Never panics; a manifest serializes and reads back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackbox::images::manifest::{Manifest, SyncRequest};
use rackbox::images::parse_url;
use rackbox::images::records::{check_boot_name, check_image_name, check_sha256, check_word};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<SyncRequest>(data);
    let Ok(manifest) = serde_json::from_slice::<Manifest>(data) else {
        return;
    };
    let text = serde_json::to_vec(&manifest).expect("a manifest serializes");
    let back: Manifest = serde_json::from_slice(&text).expect("and reads back");
    assert_eq!(
        serde_json::to_value(&back).expect("value"),
        serde_json::to_value(&manifest).expect("value")
    );
    for image in &manifest.images {
        if let Ok(url) = parse_url(&image.url) {
            assert!(matches!(url.scheme(), "http" | "https"));
        }
        let _ = check_image_name(&image.name);
        if let Ok(sha) = check_sha256(&image.sha256) {
            assert_eq!(sha.len(), 64);
        }
        for word in [&image.os, &image.release, &image.arch]
            .into_iter()
            .flatten()
        {
            let _ = check_word("word", word);
        }
    }
    for boot in &manifest.boot_resources {
        let _ = parse_url(&boot.url);
        let _ = check_boot_name(&boot.name);
        let _ = check_word("arch", &boot.arch);
        let _ = check_sha256(&boot.sha256);
    }
});
