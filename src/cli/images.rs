//! `rackbox image ...` and `rackbox boot-resource ...`: the image cache from the command line.
//!
//! Uploads (a file, or standard input with `-`) stream the bytes to the API as they are read,
//! with a progress bar showing rate and ETA; an http(s) URL asks the appliance to download and follows
//! that import's progress instead.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use futures_util::TryStreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{Value, json};

use super::{CliError, Client, Output, cell};
use crate::model::api::{BootRequest, ImageEdit, ImageRequest};

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// List images, and the cache's space used and free.
    List,
    /// Show one image.
    Show { name: String },
    /// Import an image from a file, standard input (`-`), or an http(s) URL the appliance
    /// downloads itself (resuming after interruptions).
    Import {
        name: String,
        /// A file to upload, `-` for standard input, or an http(s) URL.
        source: String,
        #[command(flatten)]
        about: ImageAbout,
        /// For a URL: print the import and return without waiting for it.
        #[arg(long)]
        no_wait: bool,
    },
    /// Delete an image (refused while a machine deploys it).
    Delete { name: String },
    /// Sync from a mirror's manifest: a URL the appliance fetches, or a local JSON file.
    Sync {
        source: String,
        /// Print what the sync started and return without waiting for the imports.
        #[arg(long)]
        no_wait: bool,
    },
    /// Remove blobs no image or boot resource references.
    Gc,
    /// Running and recent imports.
    Imports,
    /// Make an image the default of its os/arch.
    SetDefault { name: String },
}

// What `image import` says of the image, one flag each. (No doc comment: clap would show it.)
#[derive(Args, Debug)]
pub struct ImageAbout {
    /// Refuse the image (keeping nothing) unless it has this sha256.
    #[arg(long)]
    sha256: Option<String>,
    #[arg(long)]
    os: Option<String>,
    #[arg(long)]
    release: Option<String>,
    #[arg(long)]
    arch: Option<String>,
    /// raw, raw.gz, raw.xz, raw.zst, tar, tar.gz, tar.xz, tar.zst (default: from the name or content).
    #[arg(long)]
    format: Option<String>,
    #[arg(long)]
    title: Option<String>,
    /// Make it the default image of its os/arch.
    #[arg(long)]
    default: bool,
    /// Replace an image of the same name.
    #[arg(long)]
    replace: bool,
}

impl ImageAbout {
    /// The request for the image `name`, without a URL (a fetch adds its own).
    fn request(self, name: String) -> ImageRequest {
        ImageRequest {
            name,
            url: None,
            os: self.os,
            release: self.release,
            arch: self.arch,
            format: self.format,
            title: self.title,
            sha256: self.sha256,
            size: None,
            default: self.default,
            replace: self.replace,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum BootCmd {
    /// List boot resources.
    List,
    /// Import a kernel, initrd or boot loader from a file, `-` or an http(s) URL.
    Import {
        arch: String,
        name: String,
        /// kernel, initrd or bootloader.
        #[arg(long)]
        kind: String,
        /// A file to upload, `-` for standard input, or an http(s) URL.
        source: String,
        #[arg(long)]
        sha256: Option<String>,
        #[arg(long)]
        replace: bool,
    },
    Delete {
        arch: String,
        name: String,
    },
}

/// The source of an import when it is a URL (the appliance downloads it); else it is a path.
fn as_url(source: &str) -> Option<&str> {
    (source.starts_with("http://") || source.starts_with("https://")).then_some(source)
}

pub(crate) use crate::model::units::human_bytes;

fn bar_for(len: Option<u64>, what: &str) -> ProgressBar {
    let bar = match len {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} {binary_bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_message(what.to_string());
    bar
}

/// Streams a file or standard input to `path` with a progress bar.
async fn upload(
    client: &Client,
    path: &str,
    query: Vec<(&str, String)>,
    file: &std::path::Path,
    what: &str,
) -> Result<Value, CliError> {
    let (reader, length): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, Option<u64>) =
        if file.as_os_str() == "-" {
            (Box::new(tokio::io::stdin()), None)
        } else {
            let f = tokio::fs::File::open(file)
                .await
                .map_err(|e| CliError::Local(format!("cannot open {}: {e}", file.display())))?;
            let len = f.metadata().await.ok().map(|m| m.len());
            (Box::new(f), len)
        };
    // The appliance refuses what cannot fit, but only after the client has sent what it is
    // sending; asking first saves pushing gigabytes at a full disk.
    if let Some(len) = length {
        let space = client.get("/api/v1/images").await?;
        if let Some(free) = space["space"]["free_bytes"].as_u64()
            && len > free
        {
            return Err(CliError::Local(format!(
                "{} is {} but the image cache has {} free; delete images (rackbox image delete, rackbox image gc) or grow its file system",
                file.display(),
                human_bytes(len),
                human_bytes(free)
            )));
        }
    }
    let bar = bar_for(length, what);
    let counter = bar.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024)
        .inspect_ok(move |chunk| counter.inc(chunk.len() as u64));
    let result = client
        .upload(path, &query, reqwest::Body::wrap_stream(stream), length)
        .await;
    bar.finish_and_clear();
    result
}

/// Follows imports until none runs, one bar each. Answers the final states.
async fn follow(client: &Client, ids: &[String]) -> Result<Vec<Value>, CliError> {
    let multi = MultiProgress::new();
    let bars: Vec<ProgressBar> = ids.iter().map(|id| multi.add(bar_for(None, id))).collect();
    let mut finals: Vec<Option<Value>> = vec![None; ids.len()];
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    while finals.iter().any(Option::is_none) {
        tick.tick().await;
        for (i, id) in ids.iter().enumerate() {
            if finals[i].is_some() {
                continue;
            }
            let v = client.get(&format!("/api/v1/images/imports/{id}")).await?;
            let bar = &bars[i];
            if let Some(total) = v["bytes_total"].as_u64()
                && bar.length() != Some(total)
            {
                bar.set_style(bar_for(Some(total), "").style());
                bar.set_length(total);
            }
            bar.set_message(v["name"].as_str().unwrap_or(id).to_string());
            bar.set_position(v["bytes_done"].as_u64().unwrap_or(0));
            if v["state"] != "running" {
                bar.finish_and_clear();
                finals[i] = Some(v);
            }
        }
    }
    Ok(finals.into_iter().flatten().collect())
}

fn import_failed(v: &Value) -> Option<CliError> {
    (v["state"] == "failed").then(|| {
        CliError::Local(format!(
            "import of {} failed: {}",
            v["name"].as_str().unwrap_or("?"),
            v["error"].as_str().unwrap_or("unknown error")
        ))
    })
}

fn image_record(out: &Output, v: &Value) {
    out.record(
        v,
        &[
            ("name", "name"),
            ("title", "title"),
            ("os", "os"),
            ("release", "release"),
            ("arch", "arch"),
            ("format", "format"),
            ("size", "size"),
            ("sha256", "sha256"),
            ("default", "default"),
            ("source", "source"),
            ("download", "download_path"),
        ],
    );
}

fn space_line(space: &Value) -> String {
    format!(
        "space: {} used, {} free of {} (reserve {})",
        human_bytes(space["used_bytes"].as_u64().unwrap_or(0)),
        human_bytes(space["free_bytes"].as_u64().unwrap_or(0)),
        human_bytes(space["total_bytes"].as_u64().unwrap_or(0)),
        human_bytes(space["reserve_bytes"].as_u64().unwrap_or(0)),
    )
}

pub(super) async fn image(client: &Client, out: &Output, cmd: ImageCmd) -> Result<(), CliError> {
    match cmd {
        ImageCmd::List => {
            let v = client.get("/api/v1/images").await?;
            if out.json {
                out.raw(&v);
                return Ok(());
            }
            let mut rows = v["images"].clone();
            if let Some(items) = rows.as_array_mut() {
                for item in items {
                    item["size_h"] = json!(human_bytes(item["size"].as_u64().unwrap_or(0)));
                    item["sha_short"] = json!(
                        item["sha256"]
                            .as_str()
                            .map(|s| s.chars().take(12).collect::<String>())
                    );
                    item["default_mark"] = json!(if item["default"] == true { "*" } else { "" });
                }
            }
            out.table(
                &rows,
                &[
                    ("NAME", "name"),
                    ("OS", "os"),
                    ("RELEASE", "release"),
                    ("ARCH", "arch"),
                    ("FORMAT", "format"),
                    ("SIZE", "size_h"),
                    ("DEFAULT", "default_mark"),
                    ("SHA256", "sha_short"),
                    ("TITLE", "title"),
                ],
            );
            println!("{}", space_line(&v["space"]));
            if let Some(n) = v["imports_running"].as_u64().filter(|n| *n > 0) {
                println!("{n} import(s) running: rackbox image imports");
            }
        }
        ImageCmd::Show { name } => {
            let v = client.get(&format!("/api/v1/images/{name}")).await?;
            image_record(out, &v);
        }
        ImageCmd::Import {
            name,
            source,
            about,
            no_wait,
        } => {
            let request = about.request(name.clone());
            if let Some(url) = as_url(&source) {
                let fetch = ImageRequest {
                    url: Some(url.to_string()),
                    ..request
                };
                let started = client
                    .send(Method::POST, "/api/v1/images/fetch", &fetch)
                    .await?;
                let id = started["id"].as_str().unwrap_or_default().to_string();
                if no_wait {
                    out.record(
                        &started,
                        &[("import", "id"), ("name", "name"), ("state", "state")],
                    );
                    return Ok(());
                }
                let finals = follow(client, std::slice::from_ref(&id)).await?;
                if let Some(e) = finals.first().and_then(import_failed) {
                    return Err(e);
                }
                let v = client.get(&format!("/api/v1/images/{name}")).await?;
                image_record(out, &v);
            } else {
                let file = PathBuf::from(source);
                // An upload says the same in its query string.
                let mut query: Vec<(&str, String)> = vec![("name", request.name)];
                for (key, value) in [
                    ("sha256", request.sha256),
                    ("os", request.os),
                    ("release", request.release),
                    ("arch", request.arch),
                    ("format", request.format),
                    ("title", request.title),
                ] {
                    if let Some(value) = value {
                        query.push((key, value));
                    }
                }
                if request.default {
                    query.push(("default", "true".into()));
                }
                if request.replace {
                    query.push(("replace", "true".into()));
                }
                let v = upload(client, "/api/v1/images", query, &file, &name).await?;
                image_record(out, &v);
            }
        }
        ImageCmd::Delete { name } => {
            client.delete(&format!("/api/v1/images/{name}")).await?;
            out.done(&format!("deleted image {name}"));
        }
        ImageCmd::SetDefault { name } => {
            let edit = ImageEdit {
                title: None,
                default: Some(true),
            };
            let v = client
                .send(Method::PATCH, &format!("/api/v1/images/{name}"), &edit)
                .await?;
            image_record(out, &v);
        }
        ImageCmd::Sync { source, no_wait } => {
            let body = if source.starts_with("http://") || source.starts_with("https://") {
                json!({"url": source})
            } else {
                let text = std::fs::read_to_string(&source)
                    .map_err(|e| CliError::Local(format!("cannot read {source}: {e}")))?;
                let manifest: Value = serde_json::from_str(&text)
                    .map_err(|e| CliError::Local(format!("{source} is not JSON: {e}")))?;
                json!({"manifest": manifest})
            };
            // Sent as written, not as `send` compacts a body: a null or empty manifest stays
            // in it, for the API to refuse as what it is.
            let report = client
                .call(Method::POST, "/api/v1/images/sync", &[], Some(&body))
                .await?;
            let ids: Vec<String> = report["imports"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|i| i["id"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let finals = if no_wait || ids.is_empty() {
                Vec::new()
            } else {
                follow(client, &ids).await?
            };
            if out.json {
                let mut r = report.clone();
                r["finished"] = json!(finals);
                out.raw(&r);
            } else {
                for (label, key) in [
                    ("added", "added"),
                    ("updated", "updated"),
                    ("unchanged", "unchanged"),
                    ("only here (kept)", "local_only"),
                ] {
                    println!("{label}: {}", cell(&report[key]));
                }
                for f in report["failed"].as_array().into_iter().flatten() {
                    println!("not started: {}: {}", cell(&f["name"]), cell(&f["error"]));
                }
            }
            let failures: Vec<CliError> = finals.iter().filter_map(import_failed).collect();
            let refused = report["failed"].as_array().map_or(0, Vec::len);
            if !failures.is_empty() || refused > 0 {
                for f in &failures {
                    eprintln!("error: {f}");
                }
                return Err(CliError::Local(format!(
                    "sync incomplete: {} import(s) failed, {refused} not started",
                    failures.len()
                )));
            }
        }
        ImageCmd::Gc => {
            let v = client.post("/api/v1/images/gc").await?;
            if out.json {
                out.raw(&v);
            } else {
                println!(
                    "removed {} blob(s), freed {}",
                    v["removed"].as_array().map_or(0, Vec::len),
                    human_bytes(v["freed_bytes"].as_u64().unwrap_or(0))
                );
                println!("{}", space_line(&v["space"]));
            }
        }
        ImageCmd::Imports => {
            let v = client.get("/api/v1/images/imports").await?;
            out.table(
                &v,
                &[
                    ("ID", "id"),
                    ("KIND", "kind"),
                    ("NAME", "name"),
                    ("STATE", "state"),
                    ("DONE", "bytes_done"),
                    ("TOTAL", "bytes_total"),
                    ("ATTEMPTS", "attempts"),
                    ("ERROR", "error"),
                ],
            );
        }
    }
    Ok(())
}

pub(super) async fn boot(client: &Client, out: &Output, cmd: BootCmd) -> Result<(), CliError> {
    let fields = [
        ("arch", "arch"),
        ("name", "name"),
        ("kind", "kind"),
        ("size", "size"),
        ("sha256", "sha256"),
        ("download", "download_path"),
    ];
    match cmd {
        BootCmd::List => {
            let v = client.get("/api/v1/boot-resources").await?;
            out.table(
                &v,
                &[
                    ("ARCH", "arch"),
                    ("NAME", "name"),
                    ("KIND", "kind"),
                    ("SIZE", "size"),
                    ("SHA256", "sha256"),
                ],
            );
        }
        BootCmd::Import {
            arch,
            name,
            kind,
            source,
            sha256,
            replace,
        } => {
            if let Some(url) = as_url(&source) {
                let fetch = BootRequest {
                    arch: arch.clone(),
                    name: name.clone(),
                    kind,
                    url: Some(url.to_string()),
                    sha256,
                    size: None,
                    replace,
                };
                let started = client
                    .send(Method::POST, "/api/v1/boot-resources/fetch", &fetch)
                    .await?;
                let id = started["id"].as_str().unwrap_or_default().to_string();
                let finals = follow(client, std::slice::from_ref(&id)).await?;
                if let Some(e) = finals.first().and_then(import_failed) {
                    return Err(e);
                }
                out.done(&format!("imported boot resource {arch}/{name}"));
            } else {
                let file = PathBuf::from(source);
                let mut query = vec![
                    ("arch", arch.clone()),
                    ("name", name.clone()),
                    ("kind", kind),
                ];
                if let Some(s) = sha256 {
                    query.push(("sha256", s));
                }
                if replace {
                    query.push(("replace", "true".into()));
                }
                let v = upload(
                    client,
                    "/api/v1/boot-resources",
                    query,
                    &file,
                    &format!("{arch}/{name}"),
                )
                .await?;
                out.record(&v, &fields);
            }
        }
        BootCmd::Delete { arch, name } => {
            client
                .delete(&format!("/api/v1/boot-resources/{arch}/{name}"))
                .await?;
            out.done(&format!("deleted boot resource {arch}/{name}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_sizes() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 << 30), "3.0 GiB");
    }
}
