//! The native API's request bodies (`/api/v1`): what a client sends, as plain data. The HTTP
//! face reads them (their JSON schemas are the OpenAPI document's) and the CLI writes them, so a
//! renamed field is a compile error in both, never a 400 found at run time.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PowerType;

/// What an admin gives to add a machine by hand.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMachine {
    /// Short host name, unique on the appliance; `machine-<system_id>` when absent.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::hostname_or_null")]
    pub hostname: Option<String>,
    /// DNS domain of the host name; "maas" when absent.
    #[serde(default)]
    pub domain: Option<String>,
    /// Defaults to "amd64/generic".
    #[serde(default)]
    pub architecture: Option<String>,
    /// The machine's MAC addresses; the first is its boot interface.
    #[schemars(schema_with = "super::schema::macs")]
    pub mac_addresses: Vec<String>,
    /// Power driver; unconfigured when absent (commissioning may then take the settings from
    /// the BMC it finds).
    #[serde(default)]
    pub power_type: Option<PowerType>,
    /// The driver's parameters (power_address, power_user, power_pass, ...).
    #[serde(default)]
    pub power_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// Availability zone, which must exist; "default" when absent.
    #[serde(default)]
    pub zone: Option<String>,
    /// Resource pool, which must exist; "default" when absent.
    #[serde(default)]
    pub pool: Option<String>,
    /// Tags to give the machine; tags not yet known are made.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free-form note shown with the machine.
    #[serde(default)]
    pub description: Option<String>,
    /// Commission right away. Defaults to true when a power driver is given.
    #[serde(default)]
    pub commission: Option<bool>,
}

/// Changes to a machine; absent fields stay as they are.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MachineEdit {
    /// Refuse the edit unless the machine still has this generation.
    #[serde(default)]
    pub generation: Option<u64>,
    /// New short host name, unique on the appliance.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::hostname_or_null")]
    pub hostname: Option<String>,
    /// New DNS domain of the host name.
    #[serde(default)]
    pub domain: Option<String>,
    /// New free-form note.
    #[serde(default)]
    pub description: Option<String>,
    /// New MAAS architecture string, e.g. "arm64/generic".
    #[serde(default)]
    pub architecture: Option<String>,
    /// Replaces the tag set.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Tags to add to the machine's set (after `tags`, if given).
    #[serde(default)]
    pub add_tags: Vec<String>,
    /// Tags to take out of the machine's set.
    #[serde(default)]
    pub remove_tags: Vec<String>,
    /// Move the machine to this zone, which must exist.
    #[serde(default)]
    pub zone: Option<String>,
    /// Move the machine to this pool, which must exist.
    #[serde(default)]
    pub pool: Option<String>,
    /// New power driver.
    #[serde(default)]
    pub power_type: Option<PowerType>,
    /// Replaces the power parameters.
    #[serde(default)]
    pub power_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// Owner data to set; an empty value deletes the key. The owner may change this.
    #[serde(default)]
    pub owner_data: Option<std::collections::BTreeMap<String, String>>,
}

/// Parameters of an action request; which ones apply depends on the action.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// Refuse the action unless the machine still has this generation.
    #[serde(default)]
    pub generation: Option<u64>,
    /// commission: run hardware tests afterwards.
    #[serde(default)]
    pub run_tests: bool,
    /// deploy: image name in the image cache (default image when empty).
    #[serde(default)]
    pub image: Option<String>,
    /// deploy: operating system whose default image is taken when `image` is empty.
    #[serde(default)]
    pub osystem: Option<String>,
    /// deploy: release name (e.g. "jammy"), kept with the deploy and shown on the MAAS face.
    #[serde(default)]
    pub distro_series: Option<String>,
    /// deploy: cloud-init user data (plain text).
    #[serde(default)]
    pub user_data: Option<String>,
    /// deploy: which of the owner's SSH keys (by id) the machine gets; every key when absent,
    /// none when empty.
    #[serde(default)]
    pub ssh_key_ids: Option<Vec<u32>>,
    /// release: none, quick, full or secure.
    #[serde(default)]
    pub erase: Option<String>,
    /// mark_broken: why.
    #[serde(default)]
    pub reason: Option<String>,
    /// A note recorded with the event.
    #[serde(default)]
    pub comment: Option<String>,
}

/// A user to make (admins only).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name, unique on the appliance.
    #[schemars(schema_with = "super::schema::name")]
    pub username: String,
    /// Initial password; stored only as an argon2id hash.
    #[schemars(schema_with = "super::schema::password")]
    pub password: String,
    /// Contact address; empty when absent.
    #[serde(default)]
    pub email: String,
    /// "admin" or "user" (default).
    #[serde(default)]
    #[schemars(schema_with = "super::schema::role_or_null")]
    pub role: Option<String>,
}

/// Changes to a user; absent fields stay as they are.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserEdit {
    /// New password; stored only as an argon2id hash.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::password_or_null")]
    pub password: Option<String>,
    /// New contact address.
    #[serde(default)]
    pub email: Option<String>,
    /// New role, "admin" or "user"; only admins may change it.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::role_or_null")]
    pub role: Option<String>,
}

/// `POST /auth/login`: a user's credentials; the answer carries a new token.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    /// Login name.
    pub username: String,
    /// The user's password, checked against its stored hash.
    pub password: String,
    /// Name for the token made by this login.
    #[serde(default)]
    pub token_name: Option<String>,
}

/// `POST /tokens`: a new API token.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenRequest {
    /// What the token is for, shown in token lists; empty when absent.
    #[serde(default)]
    pub name: String,
    /// "native" (default) or "maas" (consumer:token:secret for MAAS clients).
    #[serde(default)]
    #[schemars(schema_with = "super::schema::token_kind_or_null")]
    pub kind: Option<String>,
    /// Admins may make tokens for other users.
    #[serde(default)]
    pub username: Option<String>,
}

/// `POST /users/{username}/sshkeys`: an SSH public key, one line.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SshKeyRequest {
    /// The whole public key line, e.g. `ssh-ed25519 AAAA... user@host`.
    pub key: String,
}

/// A zone, pool or tag to make, or an edit of one.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NamedRequest {
    /// Unique among its kind; how machines and constraints name it.
    #[schemars(schema_with = "super::schema::name")]
    pub name: String,
    /// Free-form note; empty when absent.
    #[serde(default)]
    pub description: String,
}

/// JSON body of a fetch (with `url`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageRequest {
    /// Unique among images; how deploys and downloads name it (`/images/<name>`).
    #[schemars(schema_with = "super::schema::name")]
    pub name: String,
    /// http(s) URL the appliance downloads from (fetch only).
    #[serde(default)]
    pub url: Option<String>,
    /// Defaults to "custom".
    #[serde(default)]
    #[schemars(schema_with = "super::schema::word_or_null")]
    pub os: Option<String>,
    /// Release of the OS, e.g. "noble"; empty when absent.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::word_or_null")]
    pub release: Option<String>,
    /// Defaults to "amd64".
    #[serde(default)]
    #[schemars(schema_with = "super::schema::word_or_null")]
    pub arch: Option<String>,
    /// raw, raw.gz, raw.xz, raw.zst, tar, tar.gz, tar.xz, tar.zst. Defaults to the URL's
    /// suffix, else what the content's first bytes say.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::image_format_or_null")]
    pub format: Option<String>,
    /// Human-readable name shown in image lists; empty when absent.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::title_or_null")]
    pub title: Option<String>,
    /// Refuse the content (keeping nothing) unless it has this sha256.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::sha256_or_null")]
    pub sha256: Option<String>,
    /// Refuse the content unless it has this many bytes; also checked against free space first.
    #[serde(default)]
    pub size: Option<u64>,
    /// Make it the default image of its os/arch (the first image of an os/arch always is).
    #[serde(default)]
    pub default: bool,
    /// Replace an image of the same name.
    #[serde(default)]
    pub replace: bool,
}

/// What an import of a boot resource says about it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BootRequest {
    /// Architecture the resource boots, e.g. "amd64".
    #[schemars(schema_with = "super::schema::word")]
    pub arch: String,
    /// Name under the architecture, e.g. "vmlinuz"; unique with `arch`.
    #[schemars(schema_with = "super::schema::name")]
    pub name: String,
    /// kernel, initrd or bootloader.
    #[schemars(schema_with = "super::schema::boot_kind")]
    pub kind: String,
    /// http(s) URL the appliance downloads from (fetch only; an upload carries the bytes).
    #[serde(default)]
    pub url: Option<String>,
    /// Refuse the content (keeping nothing) unless it has this sha256.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::sha256_or_null")]
    pub sha256: Option<String>,
    /// Refuse the content unless it has this many bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Replace a boot resource of the same arch and name.
    #[serde(default)]
    pub replace: bool,
}

/// Changes to an image's record.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageEdit {
    /// New human-readable name shown in image lists.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::title_or_null")]
    pub title: Option<String>,
    /// true: make it the default of its os/arch; false: stop it being the default.
    #[serde(default)]
    pub default: Option<bool>,
}
