//! The TOML configuration (`config::Config::parse`, with its validation), and what the daemon
//! derives from a configuration it accepted (TFTP, image cache, life-cycle deadlines,
//! enlistment, public URL). Never panics.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rackbox::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text, Path::new("fuzz.toml")) else {
        return;
    };
    let _ = config.tftp_enabled();
    let _ = config.tftp_root();
    let _ = config.tftp_config();
    let _ = config.images_dir();
    let _ = config.cache_options();
    let _ = config.deadlines();
    let _ = config.enlist_options();
    let _ = config.database_path();
    let _ = config.public_url();
});
