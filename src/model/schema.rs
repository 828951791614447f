//! JSON schemas for fields whose Rust type is wider than what rackbox takes (a `String` that
//! must be a name, a role, a status), used with `#[schemars(schema_with = ...)]` so that the
//! OpenAPI document (`http/openapi.rs`) says what a valid request is; tests/schemathesis.rs
//! holds the API to it. Each names the check it mirrors.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A name of a user, zone, pool, tag, image or boot file (`model::ids::check_name`).
pub fn name(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"})
}

/// An OS, release or architecture word (`images::records::check_word`), or absent.
pub(crate) fn word_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": ["string", "null"], "pattern": "^[a-z0-9_-]{1,32}$"})
}

/// An architecture word (`images::records::check_word`).
pub fn word(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "pattern": "^[a-z0-9_-]{1,32}$"})
}

/// A SHA-256 digest in hex, or absent.
pub(crate) fn sha256_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": ["string", "null"], "pattern": "^[0-9A-Fa-f]{64}$"})
}

/// A user's role, or absent (the default, or unchanged).
pub(crate) fn role_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"enum": ["admin", "user", null]})
}

/// A token's kind, or absent (native).
pub(crate) fn token_kind_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"enum": ["native", "maas", null]})
}

/// A boot resource's kind (`images::records::BootKind`).
pub(crate) fn boot_kind(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"enum": ["kernel", "initrd", "bootloader"]})
}

/// An image format (`images::records::ImageFormat`), or absent (from the name or content).
pub(crate) fn image_format_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"enum": ["raw", "raw.gz", "raw.xz", "raw.zst", "tar", "tar.gz", "tar.xz", "tar.zst", null]})
}

/// A machine status filter, as a query parameter: what `Status::parse` takes, a status key
/// (`ready`, `failed_testing`, ...), its name (`Failed testing`) or its MAAS code (`6`).
pub(crate) fn status_key(_: &mut SchemaGenerator) -> Schema {
    let mut words: Vec<String> = Vec::new();
    for s in super::Status::ALL {
        words.extend([
            s.key().to_string(),
            s.name().to_string(),
            s.code().to_string(),
        ]);
    }
    words.sort();
    words.dedup();
    json_schema!({"type": "string", "enum": words})
}

/// A host name (`model::ids::check_hostname`), or absent.
pub(crate) fn hostname_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": ["string", "null"], "pattern": HOSTNAME})
}

const HOSTNAME: &str = "^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$";

/// MAC addresses (`model::ids::normalize_mac`: 12 hex digits; this says with ':', '-', '.'
/// or nothing between the pairs, a subset of what is taken).
pub fn macs(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "array", "minItems": 1, "items": {"type": "string", "pattern": MAC}})
}

/// A MAC address filter, or absent.
pub(crate) fn mac_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": ["string", "null"], "pattern": MAC})
}

const MAC: &str = "^[0-9A-Fa-f]{2}([:.-]?[0-9A-Fa-f]{2}){5}$";

/// An IPv4 address, or absent.
pub(crate) fn ipv4_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": ["string", "null"], "format": "ipv4"})
}

/// A new password: at least 8 characters (`service::users`).
pub fn password(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "minLength": 8})
}

/// A new password, or absent (unchanged).
pub(crate) fn password_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": ["string", "null"], "minLength": 8})
}

/// An image title: no control characters, at most 256 bytes (64 characters say it whatever
/// their encoding), or absent.
pub(crate) fn title_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": ["string", "null"], "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]{0,64}$"})
}

/// A storage constraint (`model::constraints::parse_storage`): `label:GB(tag,...)` entries
/// separated by commas, label and tags optional; this says a plain subset of what is taken
/// (no spaces), or absent.
pub(crate) fn storage_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": ["string", "null"], "pattern": STORAGE})
}

const STORAGE: &str = concat!(
    r"^([A-Za-z0-9_.-]+:)?[0-9]{1,6}(\.[0-9]{1,3})?(\([A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*\))?",
    r"(,([A-Za-z0-9_.-]+:)?[0-9]{1,6}(\.[0-9]{1,3})?(\([A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*\))?)*$"
);

/// A machine's power type as stored and shown (`machine::PowerSettings::power_type`): a
/// [`super::machine::PowerType`]'s name, or "" when none is configured.
pub(crate) fn power_type_or_empty(_: &mut SchemaGenerator) -> Schema {
    let mut names = vec![String::new()];
    names.extend(super::machine::PowerType::ALL.map(|t| t.as_str().to_string()));
    json_schema!({"type": "string", "enum": names})
}
