//! `maas/?op=get_config` and `set_config`: the settings rackbox has, under MAAS's names. The
//! default OS and series are the image cache's (setting the series makes that image the
//! default); the DNS and NTP servers default to the boot subnets' own; names rackbox has no
//! setting for are refused the way MAAS refuses them.

use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{Ctx, MaasError, MaasResult, Reply, json};
use crate::images::ImageView;
use crate::model::api::ImageEdit;
use crate::model::settings::Settings;

/// Every name get_config and set_config take.
pub(crate) const NAMES: &[&str] = &[
    "maas_name",
    "default_osystem",
    "default_distro_series",
    "ntp_servers",
    "upstream_dns",
    "enable_disk_erasing_on_release",
    "disk_erase_with_secure_erase",
    "disk_erase_with_quick_erase",
    "completed_intro",
];

/// describe/'s text for the `name` parameter (the MAAS CLI shows it as the help).
pub(crate) const NAMES_DOC: &str = "The setting: maas_name, default_osystem, \
    default_distro_series, ntp_servers, upstream_dns, enable_disk_erasing_on_release, \
    disk_erase_with_secure_erase, disk_erase_with_quick_erase or completed_intro.";

/// The architecture whose default image the face reports (MAAS's defaults are per OS, not per
/// architecture; rackbox's machines are amd64 unless they say otherwise).
const DEFAULT_ARCH: &str = "amd64";

fn unknown(name: &str) -> MaasError {
    MaasError::bad_request(format!(
        "{name} is not a valid config setting (valid settings are: {}).",
        NAMES.join(", ")
    ))
}

/// The images the cache holds.
fn images(c: &Ctx) -> MaasResult<Vec<ImageView>> {
    Ok(c.state
        .images
        .list_images()
        .map_err(|e| MaasError::unavailable(format!("image cache: {e}")))?
        .images)
}

/// The OS a deploy that names none gets: the setting, else the OS of the first default image,
/// else "ubuntu" (MAAS's own default, for clients that ask before any image exists).
pub(crate) fn default_osystem(settings: &Settings, images: &[ImageView]) -> String {
    settings
        .default_osystem
        .clone()
        .or_else(|| {
            images
                .iter()
                .find(|v| v.default && v.image.arch == DEFAULT_ARCH)
                .or_else(|| images.iter().find(|v| v.default))
                .map(|v| v.image.os.clone())
        })
        .unwrap_or_else(|| "ubuntu".into())
}

/// The default image of `os`: its release, or its name when it has none.
fn default_series(os: &str, images: &[ImageView]) -> String {
    images
        .iter()
        .find(|v| v.default && v.image.os == os && v.image.arch == DEFAULT_ARCH)
        .map(|v| {
            if v.image.release.is_empty() {
                v.image.name.clone()
            } else {
                v.image.release.clone()
            }
        })
        .unwrap_or_default()
}

/// The boot subnets' servers of one kind, space-separated as MAAS writes them.
fn subnet_servers(
    c: &Ctx,
    pick: fn(&crate::config::BootSubnet) -> &[std::net::Ipv4Addr],
) -> String {
    let mut out: Vec<String> = Vec::new();
    for subnet in c.state.boot.interfaces.iter().flat_map(|i| &i.subnets) {
        for a in pick(subnet) {
            let a = a.to_string();
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out.join(" ")
}

/// One setting's value as MAAS answers it.
fn value(c: &Ctx, name: &str) -> MaasResult<Value> {
    let s = c.state.service.settings()?;
    Ok(match name {
        "maas_name" => json!(
            s.maas_name
                .clone()
                .unwrap_or_else(super::nodes::controller_hostname)
        ),
        "default_osystem" => json!(default_osystem(&s, &images(c)?)),
        "default_distro_series" => {
            let images = images(c)?;
            json!(default_series(&default_osystem(&s, &images), &images))
        }
        "ntp_servers" => json!(
            s.ntp_servers
                .clone()
                .unwrap_or_else(|| subnet_servers(c, |s| &s.ntp_servers))
        ),
        "upstream_dns" => json!(
            s.upstream_dns
                .clone()
                .unwrap_or_else(|| subnet_servers(c, |s| &s.dns_servers))
        ),
        "enable_disk_erasing_on_release" => json!(s.erase_on_release),
        "disk_erase_with_secure_erase" => json!(s.erase_secure),
        "disk_erase_with_quick_erase" => json!(s.erase_quick),
        "completed_intro" => json!(c.state.service.setup_record()?.done_ms.is_some()),
        other => return Err(unknown(other)),
    })
}

pub(crate) async fn get_config(c: Ctx) -> Reply {
    let name = c.params.required("name")?;
    json(value(&c, &name)?)
}

fn parse_bool(name: &str, value: &str) -> MaasResult<bool> {
    super::params::parse_bool(value)
        .ok_or_else(|| MaasError::bad_request(format!("{name}: {value:?} is not true or false")))
}

/// A space- or comma-separated list of IP addresses, kept space-separated.
fn parse_addresses(name: &str, value: &str) -> MaasResult<Option<String>> {
    let mut out = Vec::new();
    for a in value.split([' ', ',']).filter(|a| !a.is_empty()) {
        let ip: std::net::IpAddr = a
            .parse()
            .map_err(|_| MaasError::bad_request(format!("{name}: {a:?} is not an IP address")))?;
        out.push(ip.to_string());
    }
    Ok((!out.is_empty()).then(|| out.join(" ")))
}

/// Makes the image of `os` whose release (or name) is `series` the default for its OS.
async fn choose_default_image(c: &Ctx, os: &str, series: &str) -> MaasResult<()> {
    let images = images(c)?;
    let chosen = images
        .iter()
        .filter(|v| v.image.arch == DEFAULT_ARCH)
        .find(|v| v.image.os == os && (v.image.release == series || v.image.name == series))
        .ok_or_else(|| {
            MaasError::bad_request(format!(
                "default_distro_series: no {os} image of release {series:?} is in the image cache"
            ))
        })?;
    c.state
        .images
        .edit_image(
            &chosen.image.name,
            ImageEdit {
                title: None,
                default: Some(true),
            },
        )
        .await
        .map_err(|e| MaasError::unavailable(format!("image cache: {e}")))?;
    Ok(())
}

pub(crate) async fn set_config(c: Ctx) -> Reply {
    let p = c.principal()?.clone();
    let name = c.params.required("name")?;
    let raw = c.params.text("value")?.unwrap_or_default();
    let value = raw.trim().to_string();
    match name.as_str() {
        "default_distro_series" => {
            let os = default_osystem(&c.state.service.settings()?, &images(&c)?);
            choose_default_image(&c, &os, &value).await?;
        }
        "completed_intro" => {
            return Err(MaasError::bad_request(
                "completed_intro: the first-boot setup page sets it when the admin finishes it",
            ));
        }
        "default_osystem" => {
            if !images(&c)?.iter().any(|v| v.image.os == value) {
                return Err(MaasError::bad_request(format!(
                    "default_osystem: no image of OS {value:?} is in the image cache"
                )));
            }
            c.state
                .service
                .change_settings(&p, move |s| {
                    s.default_osystem = Some(value);
                    Ok(())
                })
                .await?;
        }
        "maas_name" | "ntp_servers" | "upstream_dns" => {
            let addresses = if name == "maas_name" {
                None
            } else {
                parse_addresses(&name, &value)?
            };
            let field = name.clone();
            c.state
                .service
                .change_settings(&p, move |s| {
                    match field.as_str() {
                        "maas_name" => s.maas_name = (!value.is_empty()).then_some(value),
                        "ntp_servers" => s.ntp_servers = addresses,
                        _ => s.upstream_dns = addresses,
                    }
                    Ok(())
                })
                .await?;
        }
        "enable_disk_erasing_on_release"
        | "disk_erase_with_secure_erase"
        | "disk_erase_with_quick_erase" => {
            let on = parse_bool(&name, &value)?;
            let field = name.clone();
            c.state
                .service
                .change_settings(&p, move |s| {
                    match field.as_str() {
                        "enable_disk_erasing_on_release" => s.erase_on_release = on,
                        "disk_erase_with_secure_erase" => s.erase_secure = on,
                        _ => s.erase_quick = on,
                    }
                    Ok(())
                })
                .await?;
        }
        other => return Err(unknown(other)),
    }
    // MAAS answers a changed setting with a plain "OK".
    Ok((axum::http::StatusCode::OK, "OK").into_response())
}
