//! Power parameters: the MAAS-compatible schema of each driver, validation,
//! secret masking, and the typed parameter structs the drivers are built from.
//!
//! Parameters arrive as a JSON object because that is what MAAS clients send
//! (`power_parameters_power_address=...` form fields end up as strings, the
//! JSON API may send numbers and bools). Every value is accepted as a string,
//! and numbers and bools are accepted where they make sense. MAAS sends empty
//! strings for optional fields that are unset, so an empty string counts as
//! absent.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Map, Value};

use super::error::{MASK, PowerParamError};
use crate::model::PowerType;

/// The JSON type a parameter takes, for the API's published schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    /// Free text.
    String,
    /// A whole number (given as number or string).
    Integer,
    /// true/false (given as bool, "true"/"false", "yes"/"no", 1/0).
    Bool,
    /// One of [`PowerParamSchema::choices`].
    Choice,
    /// An http:// or https:// URL.
    Url,
}

/// One parameter of a power driver, as published by the API.
#[derive(Debug, Clone, Serialize)]
pub struct PowerParamSchema {
    /// The MAAS name of the parameter.
    pub name: &'static str,
    /// What it is, for a form's label and help text.
    pub description: &'static str,
    /// Whether a machine of this power type must have it.
    pub required: bool,
    /// Whether the value is shown only to admins (and masked in logs).
    pub secret: bool,
    /// The JSON type.
    pub kind: ParamKind,
    /// The value used when absent, if any.
    pub default: Option<&'static str>,
    /// The allowed values for [`ParamKind::Choice`].
    pub choices: &'static [&'static str],
}

/// One power driver and its parameters, as published by the API.
#[derive(Debug, Clone, Serialize)]
pub struct PowerTypeSchema {
    /// The power type (its wire name: "ipmi", "redfish", "manual", "command").
    pub name: PowerType,
    /// What the driver does, in a sentence.
    pub description: &'static str,
    /// Its parameters.
    pub fields: &'static [PowerParamSchema],
}

/// A driver's parameter table: one row per parameter, declaring it once; the published schema
/// is the table, and the parsers below read defaults, required-ness, secrecy and choices from
/// it. A row is `name: Kind`, then the choices of a [`ParamKind::Choice`] in parentheses, then
/// `= "default"` when absent means that value (`""`: the type's empty value), then the flags
/// `[required]` and `[secret]`, then the description.
macro_rules! params {
    ($($name:ident: $kind:ident $(($($choice:literal),+))? $(= $default:literal)?
        $([$($flag:ident),+])?, $description:literal;)*) => {
        &[$(PowerParamSchema {
            name: stringify!($name),
            description: $description,
            required: false $($(|| params!(@required $flag))+)?,
            secret: false $($(|| params!(@secret $flag))+)?,
            kind: ParamKind::$kind,
            default: params!(@default $($default)?),
            choices: &[$($($choice),+)?],
        }),*]
    };
    (@required required) => { true };
    (@required secret) => { false };
    (@secret secret) => { true };
    (@secret required) => { false };
    (@default) => { None };
    (@default $default:literal) => { Some($default) };
}

const IPMI_FIELDS: &[PowerParamSchema] = params! {
    power_address: String [required], "BMC address (IP address or host name)";
    power_port: Integer = "623", "BMC UDP port (rackbox extension)";
    power_user: String = "", "BMC user name (at most 16 bytes)";
    power_pass: String = "" [secret], "BMC password (at most 20 bytes, 16 for IPMI 1.5)";
    power_driver: Choice("LAN_2_0", "LAN") = "LAN_2_0",
        "LAN_2_0 for IPMI 2.0 (RMCP+), falling back to 1.5 when the BMC has no 2.0; LAN for IPMI 1.5 only";
    cipher_suite_id: Choice("3", "8", "12", "17") = "3",
        "RMCP+ cipher suite (3 is supported; 8, 12 and 17 are refused with a clear error)";
    privilege_level: Choice("USER", "OPERATOR", "ADMIN") = "ADMIN",
        "IPMI privilege level of the session (rackbox's IPMI client always uses ADMIN)";
    k_g: String = "" [secret], "BMC key K_g (not supported: must be empty)";
    power_boot_type: Choice("auto", "efi", "legacy") = "auto",
        "firmware boot type for the one-time network boot";
    mac_address: String, "MAC address of the BMC (informational, as in MAAS)";
};

const REDFISH_FIELDS: &[PowerParamSchema] = params! {
    power_address: String [required],
        "Redfish service: host, host:port or URL (https unless the URL says http)";
    power_user: String [required], "Redfish user name";
    power_pass: String [required, secret], "Redfish password";
    node_id: String,
        "ComputerSystem id under /redfish/v1/Systems (found automatically when there is only one)";
    power_boot_type: Choice("auto", "efi", "legacy") = "auto",
        "firmware boot type for the one-time network boot";
    insecure_skip_verify: Bool = "false",
        "do not check the BMC's TLS certificate (rackbox extension; only for self-signed BMCs on a trusted network)";
    certificate_sha256: String,
        "SHA-256 of the BMC's TLS certificate (DER): 64 hex digits, or colon-separated pairs as openssl x509 -fingerprint -sha256 prints; when set, exactly that certificate is accepted whatever its issuer, expiry or host name, and any other is refused (rackbox extension; needs an https address; overrides insecure_skip_verify)";
};

/// The commands and URLs are secret, whole: a command line or a URL is where a
/// power switch's password usually is (`curl -u user:pass`, `https://user:pass@pdu/`,
/// `?password=`), so non-admins see none of them.
const COMMAND_FIELDS: &[PowerParamSchema] = params! {
    power_on_command: String [secret], "shell command (/bin/sh -c) that switches the machine on";
    power_off_command: String [secret], "shell command that switches the machine off";
    power_query_command: String [secret], "shell command that prints on or off";
    power_netboot_command: String [secret],
        "shell command that makes the next boot a network boot (RACKBOX_BOOT_EFI=1 or 0 in its environment)";
    power_on_uri: Url [secret], "URL POSTed to switch the machine on (MAAS webhook style)";
    power_off_uri: Url [secret], "URL POSTed to switch the machine off";
    power_query_uri: Url [secret], "URL fetched with GET whose body says on or off";
    power_netboot_uri: Url [secret], "URL POSTed to make the next boot a network boot";
    power_user: String, "user name for HTTP basic authentication of the URLs";
    power_pass: String [secret], "password for HTTP basic authentication of the URLs";
};

const IPMI: PowerTypeSchema = PowerTypeSchema {
    name: PowerType::Ipmi,
    description: "IPMI over LAN (RMCP+ cipher suite 3, or IPMI 1.5)",
    fields: IPMI_FIELDS,
};

const REDFISH: PowerTypeSchema = PowerTypeSchema {
    name: PowerType::Redfish,
    description: "DMTF Redfish over HTTPS",
    fields: REDFISH_FIELDS,
};

const MANUAL: PowerTypeSchema = PowerTypeSchema {
    name: PowerType::Manual,
    description: "no remote power control: an operator switches the machine",
    fields: &[],
};

const COMMAND: PowerTypeSchema = PowerTypeSchema {
    name: PowerType::Command,
    description: "shell commands or HTTP URLs (webhook) that switch the machine",
    fields: COMMAND_FIELDS,
};

/// Every power driver and its parameters, in the order of [`PowerType::ALL`].
pub fn power_types() -> &'static [PowerTypeSchema] {
    &[IPMI, REDFISH, MANUAL, COMMAND]
}

fn schema_of(power_type: PowerType) -> &'static PowerTypeSchema {
    match power_type {
        PowerType::Ipmi => &IPMI,
        PowerType::Redfish => &REDFISH,
        PowerType::Manual => &MANUAL,
        PowerType::Command => &COMMAND,
    }
}

/// Whether `key` holds a secret for machines of `power_type`.
///
/// Without a power type (parameters kept for a machine whose power is not
/// configured yet) the answer errs on the side of hiding: any key that looks
/// like a password, key or token counts as secret.
pub fn is_secret(power_type: Option<PowerType>, key: &str) -> bool {
    match power_type.map(schema_of) {
        Some(schema) => schema.fields.iter().any(|f| f.name == key && f.secret),
        None => {
            let key = key.to_ascii_lowercase();
            ["pass", "secret", "token", "k_g", "key"]
                .iter()
                .any(|needle| key.contains(needle))
        }
    }
}

/// Replaces every secret value in `params` with `"********"` (empty values are
/// left empty, so a form can still tell "not set" from "set").
pub fn mask_secrets(power_type: Option<PowerType>, params: &mut Map<String, Value>) {
    for (key, value) in params.iter_mut() {
        if is_secret(power_type, key) {
            let empty = matches!(value, Value::Null) || value.as_str().is_some_and(str::is_empty);
            if !empty {
                *value = Value::String(MASK.to_owned());
            }
        }
    }
}

/// Checks `params` against the schema of `power_type`: every required
/// parameter present, no unknown one, each of the right type and range.
pub fn validate(power_type: PowerType, params: &Map<String, Value>) -> Result<(), PowerParamError> {
    DriverParams::parse(power_type, params).map(|_| ())
}

/// A secret string whose Debug output is masked, so a struct holding one can
/// derive Debug without leaking it.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str(MASK)
        }
    }
}

/// Which firmware boot mode a one-time network boot should ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootType {
    /// Let the caller decide (from the architecture the machine's DHCP request announced).
    Auto,
    /// UEFI network boot.
    Efi,
    /// BIOS (legacy) network boot.
    Legacy,
}

impl BootType {
    /// `Some(true)` for efi, `Some(false)` for legacy, `None` for auto.
    pub fn efi(self) -> Option<bool> {
        match self {
            BootType::Auto => None,
            BootType::Efi => Some(true),
            BootType::Legacy => Some(false),
        }
    }
}

/// The IPMI LAN protocol version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IpmiLan {
    /// IPMI 1.5 only (power_driver=LAN).
    V15,
    /// RMCP+ only (power_driver=LAN_2_0, the default): a BMC that offers only
    /// 1.5 is refused, never fallen back to (power/ipmi_guard.rs).
    V20,
}

/// Parameters of the ipmi driver.
#[derive(Debug, Clone)]
pub(crate) struct IpmiParams {
    pub address: String,
    pub port: u16,
    pub user: String,
    pub pass: Secret,
    pub lan: IpmiLan,
    pub cipher_suite: u8,
    pub privilege: String,
    pub k_g: Secret,
    pub boot_type: BootType,
}

/// Parameters of the redfish driver.
#[derive(Debug, Clone)]
pub(crate) struct RedfishParams {
    /// The service root's scheme://host:port, without a trailing slash.
    pub base: String,
    pub user: String,
    pub pass: Secret,
    pub node_id: Option<String>,
    pub insecure_skip_verify: bool,
    /// The SHA-256 of the one leaf certificate (DER) the BMC may present.
    /// When set it replaces the CA, expiry and name checks, and
    /// `insecure_skip_verify` has no effect.
    pub certificate_sha256: Option<[u8; 32]>,
    pub boot_type: BootType,
}

/// How one operation of the command driver is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// A shell command run with /bin/sh -c.
    Shell(String),
    /// A URL (POST for actions, GET for queries).
    Http(String),
}

/// Parameters of the command driver.
#[derive(Debug, Clone)]
pub(crate) struct CommandParams {
    pub on: Action,
    pub off: Action,
    pub query: Option<Action>,
    pub netboot: Option<Action>,
    pub user: Option<String>,
    pub pass: Secret,
}

/// The typed parameters of one machine, by driver.
#[derive(Debug, Clone)]
pub(crate) enum DriverParams {
    Ipmi(IpmiParams),
    Redfish(RedfishParams),
    Manual,
    Command(CommandParams),
}

/// Reads the parameters of one power type against its declarations in the tables above:
/// what is missing, and the value taken when a parameter is absent, come from the table, so
/// the parsers below never restate a default or whether a parameter is required.
struct Reader<'a> {
    power_type: PowerType,
    params: &'a Map<String, Value>,
    schema: &'static [PowerParamSchema],
}

impl<'a> Reader<'a> {
    fn err_type(&self, key: &str, expected: &'static str) -> PowerParamError {
        PowerParamError::WrongType {
            param: key.to_owned(),
            expected,
        }
    }

    fn invalid(&self, key: &str, reason: impl Into<String>) -> PowerParamError {
        PowerParamError::Invalid {
            param: key.to_owned(),
            reason: reason.into(),
        }
    }

    fn declaration(&self, key: &str) -> Option<&'static PowerParamSchema> {
        self.schema.iter().find(|f| f.name == key)
    }

    /// The value of `key` read by `parse` (which answers None for a value that counts as
    /// absent), else its declared default read the same way, else None. An empty declared
    /// default stands for the type's empty value, as MAAS's "" does.
    fn value<T: Default>(
        &self,
        key: &str,
        parse: impl Fn(&Self, &str, &Value) -> Result<Option<T>, PowerParamError>,
    ) -> Result<Option<T>, PowerParamError> {
        if let Some(given) = self.params.get(key)
            && let Some(value) = parse(self, key, given)?
        {
            return Ok(Some(value));
        }
        match self.declaration(key).and_then(|f| f.default) {
            Some("") => Ok(Some(T::default())),
            Some(default) => parse(self, key, &Value::String(default.to_owned())),
            None => Ok(None),
        }
    }

    /// Like [`Reader::value`], for a parameter that is declared required or has a default:
    /// absent and without a default, it is missing.
    fn require<T: Default>(
        &self,
        key: &str,
        parse: impl Fn(&Self, &str, &Value) -> Result<Option<T>, PowerParamError>,
    ) -> Result<T, PowerParamError> {
        self.value(key, parse)?
            .ok_or_else(|| PowerParamError::Missing {
                param: key.to_owned(),
                power_type: self.power_type,
            })
    }

    /// The value as text; numbers and bools become their JSON text; empty is None.
    fn text(&self, key: &str, value: &Value) -> Result<Option<String>, PowerParamError> {
        match value {
            Value::Null => Ok(None),
            Value::String(s) if s.trim().is_empty() => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            Value::Number(n) => Ok(Some(n.to_string())),
            Value::Bool(b) => Ok(Some(b.to_string())),
            _ => Err(self.err_type(key, "a string")),
        }
    }

    /// Like [`Reader::text`] but only strings: for user names, passwords,
    /// commands (a number there is certainly a mistake in a form).
    fn string(&self, key: &str, value: &Value) -> Result<Option<String>, PowerParamError> {
        match value {
            Value::Null => Ok(None),
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            Value::Number(_) if !self.is_secret(key) => self.text(key, value),
            _ => Err(self.err_type(key, "a string")),
        }
    }

    fn is_secret(&self, key: &str) -> bool {
        self.declaration(key).is_some_and(|f| f.secret)
    }

    fn integer(
        &self,
        key: &str,
        value: &Value,
        min: i64,
        max: i64,
    ) -> Result<Option<i64>, PowerParamError> {
        const EXPECTED: &str = "a whole number (as a number or a string)";
        let n = match value {
            Value::Null => return Ok(None),
            Value::String(s) if s.trim().is_empty() => return Ok(None),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| self.err_type(key, EXPECTED))?,
            Value::Number(n) => n.as_i64().ok_or_else(|| self.err_type(key, EXPECTED))?,
            _ => return Err(self.err_type(key, EXPECTED)),
        };
        if n < min || n > max {
            return Err(self.invalid(key, format!("{n} is outside {min}..={max}")));
        }
        Ok(Some(n))
    }

    fn boolean(&self, key: &str, value: &Value) -> Result<Option<bool>, PowerParamError> {
        const EXPECTED: &str = "true or false";
        match value {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(*b)),
            Value::Number(n) => match n.as_i64() {
                Some(0) => Ok(Some(false)),
                Some(1) => Ok(Some(true)),
                _ => Err(self.err_type(key, EXPECTED)),
            },
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "" => Ok(None),
                "true" | "yes" | "on" | "1" => Ok(Some(true)),
                "false" | "no" | "off" | "0" => Ok(Some(false)),
                _ => Err(self.err_type(key, EXPECTED)),
            },
            _ => Err(self.err_type(key, EXPECTED)),
        }
    }

    /// One of the declared choices, as the table spells it (the match ignores case).
    fn choice(&self, key: &str, value: &Value) -> Result<Option<String>, PowerParamError> {
        let Some(value) = self.text(key, value)? else {
            return Ok(None);
        };
        let choices = self.declaration(key).map(|f| f.choices).unwrap_or(&[]);
        choices
            .iter()
            .find(|c| c.eq_ignore_ascii_case(value.trim()))
            .map(|c| Some((*c).to_owned()))
            .ok_or_else(|| self.invalid(key, format!("must be one of {}", choices.join(", "))))
    }

    fn boot_type(&self) -> Result<BootType, PowerParamError> {
        Ok(
            match self.require("power_boot_type", Self::choice)?.as_str() {
                "efi" => BootType::Efi,
                "legacy" => BootType::Legacy,
                _ => BootType::Auto,
            },
        )
    }

    fn url(&self, key: &str, value: &Value) -> Result<Option<String>, PowerParamError> {
        let Some(value) = self.string(key, value)? else {
            return Ok(None);
        };
        let url = reqwest::Url::parse(value.trim())
            .map_err(|e| self.invalid(key, format!("not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.invalid(key, "must be an http:// or https:// URL"));
        }
        if url.host_str().is_none() {
            return Err(self.invalid(key, "the URL has no host"));
        }
        Ok(Some(url.to_string()))
    }

    /// Fails on the first key that is not in the schema.
    fn no_unknown(&self) -> Result<(), PowerParamError> {
        let mut keys: Vec<&String> = self.params.keys().collect();
        keys.sort();
        for key in keys {
            if !self.schema.iter().any(|f| f.name == key.as_str()) {
                return Err(PowerParamError::Unknown {
                    param: key.chars().take(64).collect(),
                    power_type: self.power_type,
                });
            }
        }
        Ok(())
    }
}

/// A host name or IP address: no spaces, no scheme, no path.
fn check_host(reader: &Reader<'_>, key: &str, host: &str) -> Result<(), PowerParamError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let valid_name = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if valid_name {
        Ok(())
    } else {
        Err(reader.invalid(key, "must be an IP address or a host name"))
    }
}

impl DriverParams {
    pub(crate) fn parse(
        power_type: PowerType,
        params: &Map<String, Value>,
    ) -> Result<DriverParams, PowerParamError> {
        let reader = Reader {
            power_type,
            params,
            schema: schema_of(power_type).fields,
        };
        reader.no_unknown()?;
        match power_type {
            PowerType::Ipmi => parse_ipmi(&reader).map(DriverParams::Ipmi),
            PowerType::Redfish => parse_redfish(&reader).map(DriverParams::Redfish),
            PowerType::Command => parse_command(&reader).map(DriverParams::Command),
            PowerType::Manual => Ok(DriverParams::Manual),
        }
    }
}

fn parse_ipmi(r: &Reader<'_>) -> Result<IpmiParams, PowerParamError> {
    let address = r.require("power_address", Reader::text)?;
    let address = address.trim().to_owned();
    check_host(r, "power_address", &address)?;
    let port = r.require("power_port", |r, key, value| {
        r.integer(key, value, 1, 65535)
    })? as u16;
    let user = r.require("power_user", Reader::string)?;
    if user.len() > 16 {
        return Err(r.invalid("power_user", "IPMI user names are at most 16 bytes"));
    }
    let pass = r.require("power_pass", Reader::string)?;
    let lan = match r.require("power_driver", Reader::choice)?.as_str() {
        "LAN" => IpmiLan::V15,
        _ => IpmiLan::V20,
    };
    let max_pass = if lan == IpmiLan::V15 { 16 } else { 20 };
    if pass.len() > max_pass {
        return Err(r.invalid(
            "power_pass",
            format!("IPMI passwords are at most {max_pass} bytes for this power_driver"),
        ));
    }
    let cipher_suite = r.require("cipher_suite_id", Reader::choice)?;
    let cipher_suite = cipher_suite
        .parse::<u8>()
        .map_err(|_| r.invalid("cipher_suite_id", "must be a cipher suite number"))?;
    let privilege = r.require("privilege_level", Reader::choice)?;
    let k_g = r.require("k_g", Reader::string)?;
    let _mac = r.value("mac_address", Reader::text)?;
    Ok(IpmiParams {
        address,
        port,
        user,
        pass: Secret(pass),
        lan,
        cipher_suite,
        privilege,
        k_g: Secret(k_g),
        boot_type: r.boot_type()?,
    })
}

fn parse_redfish(r: &Reader<'_>) -> Result<RedfishParams, PowerParamError> {
    let address = r.require("power_address", Reader::text)?;
    let address = address.trim();
    let with_scheme = if address.contains("://") {
        address.to_owned()
    } else {
        format!("https://{address}")
    };
    let url = reqwest::Url::parse(&with_scheme).map_err(|e| {
        r.invalid(
            "power_address",
            format!("not a host, host:port or URL ({e})"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(r.invalid("power_address", "the URL must be http:// or https://"));
    }
    let Some(host) = url.host_str() else {
        return Err(r.invalid("power_address", "no host in the address"));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(r.invalid(
            "power_address",
            "put the credentials in power_user and power_pass, not in the address",
        ));
    }
    let base = match url.port() {
        Some(port) => format!("{}://{}:{}", url.scheme(), host, port),
        None => format!("{}://{}", url.scheme(), host),
    };
    let user = r.require("power_user", Reader::string)?;
    let pass = r.require("power_pass", Reader::string)?;
    let node_id = r
        .value("node_id", Reader::text)?
        .map(|s| s.trim().to_owned());
    if let Some(id) = &node_id
        && id.contains('/')
        && !id.starts_with("/redfish/v1/Systems/")
    {
        return Err(r.invalid(
            "node_id",
            "must be a system id (or /redfish/v1/Systems/<id>)",
        ));
    }
    let certificate_sha256 = match r.value("certificate_sha256", Reader::text)? {
        None => None,
        Some(text) => {
            let pin = parse_sha256_fingerprint(&text).ok_or_else(|| {
                r.invalid(
                    "certificate_sha256",
                    "must be the SHA-256 of the BMC's certificate (DER) as 64 hex digits, \
                     optionally as colon-separated pairs (AB:CD:...:EF, what \
                     `openssl x509 -noout -fingerprint -sha256` prints after 'Fingerprint=')",
                )
            })?;
            if url.scheme() != "https" {
                return Err(r.invalid(
                    "certificate_sha256",
                    "certificate_sha256 needs an https address (power_address is http://)",
                ));
            }
            Some(pin)
        }
    };
    Ok(RedfishParams {
        base,
        user,
        pass: Secret(pass),
        node_id,
        insecure_skip_verify: r.require("insecure_skip_verify", Reader::boolean)?,
        certificate_sha256,
        boot_type: r.boot_type()?,
    })
}

/// A SHA-256 fingerprint as people copy it: 64 hex digits in either case,
/// either run together or as 32 colon-separated pairs (`AB:CD:...`, as
/// `openssl x509 -fingerprint -sha256` prints). None for anything else.
fn parse_sha256_fingerprint(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let pairs: Vec<&[u8]> = if text.contains(':') {
        text.split(':').map(str::as_bytes).collect()
    } else {
        text.as_bytes().chunks(2).collect()
    };
    if pairs.len() != 32 {
        return None;
    }
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut pin = [0u8; 32];
    for (byte, pair) in pin.iter_mut().zip(pairs) {
        let [high, low] = pair else {
            return None;
        };
        *byte = (digit(*high)? << 4) | digit(*low)?;
    }
    Some(pin)
}

fn parse_command(r: &Reader<'_>) -> Result<CommandParams, PowerParamError> {
    let action = |cmd_key: &str, uri_key: &str| -> Result<Option<Action>, PowerParamError> {
        let cmd = r.value(cmd_key, Reader::string)?;
        let uri = r.value(uri_key, Reader::url)?;
        match (cmd, uri) {
            (Some(_), Some(_)) => Err(r.invalid(
                uri_key,
                format!("give either {cmd_key} or {uri_key}, not both"),
            )),
            (Some(cmd), None) => Ok(Some(Action::Shell(cmd))),
            (None, Some(uri)) => Ok(Some(Action::Http(uri))),
            (None, None) => Ok(None),
        }
    };
    let require = |a: Option<Action>, cmd_key: &str, uri_key: &str| {
        a.ok_or_else(|| PowerParamError::Missing {
            param: format!("{cmd_key} (or {uri_key})"),
            power_type: PowerType::Command,
        })
    };
    let on = require(
        action("power_on_command", "power_on_uri")?,
        "power_on_command",
        "power_on_uri",
    )?;
    let off = require(
        action("power_off_command", "power_off_uri")?,
        "power_off_command",
        "power_off_uri",
    )?;
    let query = action("power_query_command", "power_query_uri")?;
    let netboot = action("power_netboot_command", "power_netboot_uri")?;
    let user = r.value("power_user", Reader::string)?;
    // No password means basic authentication with an empty one, when a user is given.
    let pass = r.value("power_pass", Reader::string)?.unwrap_or_default();
    Ok(CommandParams {
        on,
        off,
        query,
        netboot,
        user,
        pass: Secret(pass),
    })
}

/// The boot type a machine's parameters ask for (`power_boot_type`), so the
/// service can decide the `efi` flag of a one-time network boot: `Some(true)`
/// for efi, `Some(false)` for legacy, `None` for auto or a driver without it.
pub fn requested_boot_efi(power_type: PowerType, params: &Map<String, Value>) -> Option<bool> {
    match DriverParams::parse(power_type, params).ok()? {
        DriverParams::Ipmi(p) => p.boot_type.efi(),
        DriverParams::Redfish(p) => p.boot_type.efi(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn ipmi_accepts_strings_and_numbers_and_defaults() {
        let p = map(json!({"power_address": "10.0.0.5", "power_user": "admin",
            "power_pass": "pw", "power_port": 6230, "cipher_suite_id": 3, "k_g": ""}));
        validate(PowerType::Ipmi, &p).unwrap();
        let Ok(DriverParams::Ipmi(ipmi)) = DriverParams::parse(PowerType::Ipmi, &p) else {
            panic!("not ipmi")
        };
        assert_eq!(ipmi.port, 6230);
        assert_eq!(ipmi.cipher_suite, 3);
        assert_eq!(ipmi.lan, IpmiLan::V20);
        let p = map(json!({"power_address": "bmc1.example", "power_port": "623",
            "power_driver": "LAN", "power_boot_type": "EFI"}));
        validate(PowerType::Ipmi, &p).unwrap();
        assert_eq!(requested_boot_efi(PowerType::Ipmi, &p), Some(true));
    }

    #[test]
    fn errors_name_the_parameter() {
        use PowerType::{Command, Ipmi, Manual, Redfish};
        let cases: Vec<(PowerType, Value, &str)> = vec![
            (Ipmi, json!({}), "power_address"),
            (Ipmi, json!({"power_address": ""}), "power_address"),
            (Ipmi, json!({"power_address": "a b"}), "power_address"),
            (
                Ipmi,
                json!({"power_address": "h", "power_port": "x"}),
                "power_port",
            ),
            (
                Ipmi,
                json!({"power_address": "h", "power_port": 70000}),
                "power_port",
            ),
            (
                Ipmi,
                json!({"power_address": "h", "power_pass": {"a": 1}}),
                "power_pass",
            ),
            (
                Ipmi,
                json!({"power_address": "h", "power_driver": "LAN3"}),
                "power_driver",
            ),
            (
                Ipmi,
                json!({"power_address": "h", "cipher_suite_id": "5"}),
                "cipher_suite_id",
            ),
            (Ipmi, json!({"power_address": "h", "bogus": "1"}), "bogus"),
            (
                Redfish,
                json!({"power_address": "h", "power_user": "u"}),
                "power_pass",
            ),
            (
                Redfish,
                json!({"power_address": "h", "power_user": "u", "power_pass": "p",
                    "insecure_skip_verify": "maybe"}),
                "insecure_skip_verify",
            ),
            (
                Redfish,
                json!({"power_address": "ftp://h", "power_user": "u", "power_pass": "p"}),
                "power_address",
            ),
            (
                Command,
                json!({"power_off_command": "x"}),
                "power_on_command",
            ),
            (
                Command,
                json!({"power_on_command": "x", "power_off_uri": "notaurl"}),
                "power_off_uri",
            ),
            (Manual, json!({"power_address": "h"}), "power_address"),
        ];
        for (ty, params, name) in cases {
            let err = validate(ty, &map(params.clone())).expect_err(&format!("{ty} {params}"));
            assert!(
                err.to_string().contains(name),
                "{ty} {params}: '{err}' does not name {name}"
            );
        }
    }

    #[test]
    fn long_password_error_does_not_show_it() {
        let pass = "x-secret-password-that-is-far-too-long";
        let p = map(json!({"power_address": "h", "power_pass": pass}));
        let err = validate(PowerType::Ipmi, &p).unwrap_err();
        assert!(err.to_string().contains("power_pass"));
        assert!(!err.to_string().contains(pass));
        assert!(!format!("{err:?}").contains(pass));
    }

    #[test]
    fn secrets_are_masked() {
        assert!(is_secret(Some(PowerType::Ipmi), "power_pass"));
        assert!(is_secret(Some(PowerType::Ipmi), "k_g"));
        assert!(!is_secret(Some(PowerType::Ipmi), "power_user"));
        assert!(is_secret(Some(PowerType::Redfish), "power_pass"));
        assert!(is_secret(None, "api_token"));
        let mut p = map(json!({"power_address": "h", "power_pass": "hunter2", "k_g": ""}));
        mask_secrets(Some(PowerType::Ipmi), &mut p);
        assert_eq!(p["power_pass"], json!(MASK));
        assert_eq!(p["k_g"], json!(""));
        assert_eq!(p["power_address"], json!("h"));
    }

    #[test]
    fn redfish_address_forms() {
        let base = |addr: &str| {
            let p = map(json!({"power_address": addr, "power_user": "u", "power_pass": "p"}));
            match DriverParams::parse(PowerType::Redfish, &p) {
                Ok(DriverParams::Redfish(r)) => r.base,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(base("10.1.2.3"), "https://10.1.2.3");
        assert_eq!(base("10.1.2.3:8443"), "https://10.1.2.3:8443");
        assert_eq!(base("http://127.0.0.1:8000/"), "http://127.0.0.1:8000");
        assert_eq!(
            base("https://bmc.example/redfish/v1"),
            "https://bmc.example"
        );
    }

    fn redfish_pin(address: &str, pin: Value) -> Result<Option<[u8; 32]>, PowerParamError> {
        let p = map(
            json!({"power_address": address, "power_user": "u", "power_pass": "p",
            "certificate_sha256": pin}),
        );
        match DriverParams::parse(PowerType::Redfish, &p)? {
            DriverParams::Redfish(r) => Ok(r.certificate_sha256),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn certificate_sha256_forms() {
        let want: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(0x0a));
        let lower: String = want.iter().map(|b| format!("{b:02x}")).collect();
        let colons = want
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(lower.len(), 64);
        assert_eq!(colons.len(), 95);
        for form in [
            lower.clone(),
            lower.to_ascii_uppercase(),
            colons.clone(),
            colons.to_ascii_lowercase(),
            format!("  {colons}\n"),
        ] {
            assert_eq!(
                redfish_pin("https://bmc:8443", json!(form)).expect(&form),
                Some(want),
                "{form}"
            );
        }
        // A bare host means https.
        assert_eq!(redfish_pin("10.0.0.9", json!(lower)).unwrap(), Some(want));
        // Empty is unset, as MAAS sends it.
        assert_eq!(redfish_pin("https://bmc", json!("")).unwrap(), None);
        assert_eq!(redfish_pin("http://bmc", json!("")).unwrap(), None);
        assert_eq!(redfish_pin("https://bmc", Value::Null).unwrap(), None);
        // The pin wins over insecure_skip_verify; both may be given.
        let p = map(json!({"power_address": "https://bmc", "power_user": "u",
            "power_pass": "p", "insecure_skip_verify": true, "certificate_sha256": colons}));
        let Ok(DriverParams::Redfish(r)) = DriverParams::parse(PowerType::Redfish, &p) else {
            panic!("not redfish")
        };
        assert_eq!(r.certificate_sha256, Some(want));
    }

    #[test]
    fn certificate_sha256_refusals_name_it() {
        let lower: String = "0123456789abcdef".repeat(4);
        let bad = [
            json!(lower[..62]),                   // too short
            json!(format!("{lower}00")),          // too long
            json!(lower[..63]),                   // odd length
            json!(format!("{}zz", &lower[..62])), // not hex
            json!(format!("+{}", &lower[..63])),  // a sign is no digit
            json!(format!("{}:", lower)),         // a stray colon
            json!(lower.replace("01", "01:")),    // pairs and runs mixed
            json!(
                lower
                    .as_bytes()
                    .chunks(4)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>()
                    .join(":")
            ), // groups of four
            json!(format!("sha256 Fingerprint={lower}")), // openssl's whole line
            json!(format!("{} {}", &lower[..32], &lower[32..])),
            json!(12345),
            json!(true),
            json!(["ab"]),
        ];
        for pin in bad {
            let err = redfish_pin("https://bmc", pin.clone()).expect_err(&pin.to_string());
            let text = err.to_string();
            assert!(text.contains("certificate_sha256"), "{pin}: {text}");
        }
        let err = redfish_pin("https://bmc", json!("ab")).unwrap_err();
        assert!(err.to_string().contains("64 hex digits"), "{err}");

        let err = redfish_pin("http://bmc:8000", json!(lower)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("certificate_sha256") && text.contains("needs an https address"),
            "{text}"
        );
    }

    #[test]
    fn certificate_sha256_is_published_and_not_secret() {
        let redfish = power_types()
            .iter()
            .find(|t| t.name == PowerType::Redfish)
            .expect("redfish");
        let names: Vec<&str> = redfish.fields.iter().map(|f| f.name).collect();
        let skip = names
            .iter()
            .position(|n| *n == "insecure_skip_verify")
            .expect("insecure_skip_verify");
        assert_eq!(names.get(skip + 1), Some(&"certificate_sha256"));
        assert!(!is_secret(Some(PowerType::Redfish), "certificate_sha256"));
        let mut p = map(json!({"certificate_sha256": "ab".repeat(32)}));
        mask_secrets(Some(PowerType::Redfish), &mut p);
        assert_eq!(p["certificate_sha256"], json!("ab".repeat(32)));
    }

    #[test]
    fn every_declared_default_is_accepted_by_its_parser() {
        for power_type in power_types() {
            let required = power_type
                .fields
                .iter()
                .filter(|f| f.required)
                .map(|f| (f.name.to_owned(), json!("h")));
            for field in power_type.fields {
                let Some(default) = field.default else {
                    continue;
                };
                let mut params: Map<String, Value> = required.clone().collect();
                params.insert(field.name.to_owned(), json!(default));
                validate(power_type.name, &params)
                    .unwrap_or_else(|e| panic!("{} {}: {e}", power_type.name, field.name));
            }
        }
    }

    #[test]
    fn schema_is_published_for_every_driver() {
        let names: Vec<PowerType> = power_types().iter().map(|t| t.name).collect();
        assert_eq!(names, PowerType::ALL);
        let json = serde_json::to_value(power_types()).unwrap();
        assert_eq!(json[0]["name"], "ipmi");
        assert_eq!(json[0]["fields"][0]["name"], "power_address");
    }
}
