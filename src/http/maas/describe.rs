//! `describe/`: the API's description, generated from the face's own route table, in MAAS's
//! shape. python-libmaas builds its whole client from it (one class per handler name, one method
//! per action), so it must list exactly what [`RESOURCES`] serves.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Action, Ctx, PREFIX, RESOURCES, Reply, Resource, json};
use crate::http::Access;

/// An action's description as MAAS writes its docstrings: a title line, then one
/// `:param name: meaning` line per parameter. The MAAS CLI shows it as the command's help and
/// accepts `key=value` arguments only when a `:param` line is there.
fn action_doc(a: &Action) -> String {
    let mut doc = a.doc.to_string();
    if !a.params.is_empty() {
        doc.push_str("\n\n");
        for (name, meaning) in a.params {
            doc.push_str(&format!(":param {name}: {meaning}\n:type {name}: String\n"));
        }
    }
    doc
}

/// The placeholders of a path, in order: `machines/{system_id}/` -> ["system_id"].
fn placeholders(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

/// One handler description with the actions `keep` selects; None when it selects none.
fn handler(r: &Resource, origin: &str, anon: bool, keep: impl Fn(Access) -> bool) -> Option<Value> {
    let actions: Vec<Value> = r
        .actions
        .iter()
        .filter(|a| keep(a.access))
        .map(|a| {
            json!({
                "name": a.name(),
                "method": a.method.as_str(),
                "op": a.op,
                "restful": a.op.is_none(),
                "doc": action_doc(a),
            })
        })
        .collect();
    if actions.is_empty() {
        return None;
    }
    let path = format!("{PREFIX}{}", r.path);
    let name = if anon {
        format!("Anon{}", r.name)
    } else {
        r.name.to_string()
    };
    Some(json!({
        "name": name,
        "doc": r.doc,
        "params": placeholders(r.path),
        "path": path,
        "uri": format!("{origin}{path}"),
        "actions": actions,
    }))
}

/// The whole description for a client that reached us at `origin` (`http://host:port`).
/// Anonymous actions form a resource's `anon` handler, the others its `auth` handler; an
/// authenticated client uses `auth` and falls back to `anon`, as MAAS clients do.
pub fn document(origin: &str) -> Value {
    let mut resources = Vec::new();
    let mut handlers = Vec::new();
    for r in RESOURCES {
        let has_auth = r.actions.iter().any(|a| a.access != Access::Anonymous);
        let anon = handler(r, origin, has_auth, |a| a == Access::Anonymous);
        let auth = handler(r, origin, false, |a| a != Access::Anonymous);
        for h in [&anon, &auth].into_iter().flatten() {
            handlers.push(h.clone());
        }
        resources.push(json!({"name": r.name, "anon": anon, "auth": auth}));
    }
    // The hash covers what the table serves, not where the client reached it.
    let mut digest = Sha256::new();
    for r in RESOURCES {
        digest.update(r.path.as_bytes());
        for a in r.actions {
            digest.update(a.method.as_str().as_bytes());
            digest.update(a.op.unwrap_or("").as_bytes());
        }
    }
    let hash: String = digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json!({
        "doc": "MAAS API (rackbox)",
        "hash": hash,
        "resources": resources,
        "handlers": handlers,
    })
}

pub async fn describe(c: Ctx) -> Reply {
    json(document(&c.origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_every_action_with_absolute_uris() {
        let d = document("http://10.0.0.1:5240");
        let resources = d["resources"].as_array().unwrap();
        assert_eq!(resources.len(), RESOURCES.len());
        let machines = resources
            .iter()
            .find(|r| r["name"] == "MachineHandler")
            .unwrap();
        assert_eq!(
            machines["auth"]["uri"],
            "http://10.0.0.1:5240/MAAS/api/2.0/machines/{system_id}/"
        );
        assert_eq!(machines["auth"]["params"], json!(["system_id"]));
        assert!(machines["anon"].is_null());
        let names: Vec<&str> = machines["auth"]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        for n in [
            "read",
            "update",
            "delete",
            "deploy",
            "release",
            "query_power_state",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        let version = resources
            .iter()
            .find(|r| r["name"] == "VersionHandler")
            .unwrap();
        assert!(version["auth"].is_null());
        assert_eq!(version["anon"]["name"], "VersionHandler");
        let files = resources
            .iter()
            .find(|r| r["name"] == "FilesHandler")
            .unwrap();
        assert_eq!(files["anon"]["name"], "AnonFilesHandler");
        assert_eq!(files["anon"]["actions"][0]["op"], "get_by_key");
    }

    /// The MAAS CLI's name for a handler (maascli.utils.handler_command_name): its camel-case
    /// words, lower-cased, without "handler", joined by '-'.
    fn command_name(handler: &str) -> String {
        let mut words: Vec<String> = Vec::new();
        let chars: Vec<char> = handler.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_uppercase() {
                i += 1;
            }
            let upper_run = i - start;
            if i < chars.len() && (chars[i].is_ascii_lowercase() || chars[i].is_ascii_digit()) {
                while i < chars.len()
                    && (chars[i].is_ascii_lowercase() || chars[i].is_ascii_digit())
                {
                    i += 1;
                }
            } else if upper_run == 0 {
                i += 1;
                continue;
            }
            words.push(chars[start..i].iter().collect::<String>().to_lowercase());
        }
        words.retain(|w| w != "handler");
        words.join("-")
    }

    #[test]
    fn the_maas_cli_gets_every_command_it_needs_with_its_arguments() {
        assert_eq!(command_name("IPRangesHandler"), "ipranges");
        assert_eq!(command_name("SSHKeysHandler"), "sshkeys");
        assert_eq!(command_name("NodeResultsHandler"), "node-results");
        let d = document("http://192.0.2.1:5240");
        let mut commands = std::collections::BTreeMap::new();
        for r in d["resources"].as_array().unwrap() {
            let name = r["name"].as_str().unwrap();
            let previous = commands.insert(command_name(name), r.clone());
            assert!(
                previous.is_none(),
                "two handlers are the CLI's {}",
                command_name(name)
            );
        }
        // What the MAAS CLI refused or lacked before (issue 18), each with key=value arguments
        // where the CLI must accept them: the action's doc has a `:param` line (maascli
        // registers the `data` argument only then, see maascli/api.py register_actions).
        let wanted = [
            ("machines", "create", true),
            ("machines", "allocate", true),
            ("machines", "read", true),
            ("machine", "update", true),
            ("machine", "details", false),
            ("tags", "create", true),
            ("tag", "update_nodes", true),
            ("tag", "nodes", false),
            ("maas", "get_config", true),
            ("maas", "set_config", true),
            ("nodes", "read", true),
            ("devices", "create", true),
            ("rack-controllers", "read", false),
            ("region-controllers", "read", false),
            ("node-results", "read", true),
            ("sshkeys", "create", true),
            ("boot-sources", "read", false),
            ("ipranges", "create", true),
            ("events", "query", true),
            ("dnsresources", "read", true),
        ];
        for (command, action, takes_data) in wanted {
            let r = commands
                .get(command)
                .unwrap_or_else(|| panic!("no {command} command"));
            let a = r["auth"]["actions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["name"] == action)
                .unwrap_or_else(|| panic!("{command} has no {action}"));
            let doc = a["doc"].as_str().unwrap();
            // maascli splits the title from the body at the first blank line.
            let body = doc.split_once("\n\n").map(|(_, b)| b).unwrap_or("");
            assert_eq!(
                body.contains(":param"),
                takes_data,
                "{command} {action}: {doc:?}"
            );
        }
    }
}
