//! How the CLI prints: tables and records for people, the API's JSON with `--json`.

use serde_json::{Value, json};

/// How results are printed.
pub(super) struct Output {
    pub(super) json: bool,
}

pub(super) fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(cell).collect();
            if parts.is_empty() {
                "-".into()
            } else {
                parts.join(",")
            }
        }
        other => other.to_string(),
    }
}

/// Reads a dotted path ("power_state.state") from a JSON value.
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

impl Output {
    pub(super) fn raw(&self, v: &Value) {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }

    pub(super) fn done(&self, message: &str) {
        if self.json {
            println!("{}", json!({"ok": true, "message": message}));
        } else {
            println!("{message}");
        }
    }

    pub(super) fn table(&self, v: &Value, columns: &[(&str, &str)]) {
        if self.json {
            return self.raw(v);
        }
        let rows: Vec<Vec<String>> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|item| columns.iter().map(|(_, k)| cell(at(item, k))).collect())
                    .collect()
            })
            .unwrap_or_default();
        let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.len()).collect();
        for row in &rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: Vec<String>| {
            let text: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            println!("{}", text.join("  ").trim_end());
        };
        line(columns.iter().map(|(h, _)| h.to_string()).collect());
        for row in rows {
            line(row);
        }
    }

    pub(super) fn record(&self, v: &Value, fields: &[(&str, &str)]) {
        if self.json {
            return self.raw(v);
        }
        let width = fields.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        for (label, key) in fields {
            println!("{label:<width$}  {}", cell(at(v, key)));
        }
    }

    pub(super) fn machines(&self, page: &Value) {
        if self.json {
            return self.raw(page);
        }
        self.table(
            &page["items"],
            &[
                ("SYSTEM_ID", "system_id"),
                ("HOSTNAME", "hostname"),
                ("STATUS", "status_name"),
                ("POWER", "power_state.state"),
                ("OWNER", "owner"),
                ("CPU", "cpu_count"),
                ("MEM_MIB", "memory_mib"),
                ("ZONE", "zone"),
                ("POOL", "pool"),
                ("TAGS", "tags"),
            ],
        );
        if let Some(next) = page["next"].as_str() {
            eprintln!("(more: {} in all; next page after {next})", page["total"]);
        }
    }

    pub(super) fn machine(&self, m: &Value) {
        self.record(
            m,
            &[
                ("system_id", "system_id"),
                ("hostname", "hostname"),
                ("status", "status_name"),
                ("message", "status_message"),
                ("owner", "owner"),
                ("power", "power_state.state"),
                ("power_type", "power.power_type"),
                ("architecture", "architecture"),
                ("cpu_count", "cpu_count"),
                ("memory_mib", "memory_mib"),
                ("zone", "zone"),
                ("pool", "pool"),
                ("tags", "tags"),
                ("locked", "locked"),
                ("generation", "generation"),
            ],
        );
    }

    /// A machine's interfaces and their links, one line each.
    pub(super) fn links(&self, m: &Value) {
        self.table(
            &m["interfaces"],
            &[
                ("INTERFACE", "name"),
                ("MAC", "mac"),
                ("LINK", "network.mode"),
                ("SUBNET", "network.subnet"),
                ("IP", "network.ip"),
            ],
        );
    }

    /// A machine's boot timeline: each boot's steps with their time since the boot began, in
    /// the words the control page uses.
    pub(super) fn boot_timeline(&self, v: &Value) {
        use crate::model::timeline::{MachineTimeline, human_ms};
        if self.json {
            return self.raw(v);
        }
        let Ok(t) = serde_json::from_value::<MachineTimeline>(v.clone()) else {
            return self.raw(v);
        };
        if t.current.is_none() {
            println!(
                "{}: no network boot seen since rackbox started",
                t.system_id
            );
            return;
        }
        for (title, boot) in [("current boot", &t.current), ("previous boot", &t.previous)] {
            let Some(boot) = boot else { continue };
            print!("{}: {title} of {}", t.system_id, boot.mac);
            if boot.dropped_steps > 0 {
                print!(" ({} earlier steps not kept)", boot.dropped_steps);
            }
            println!();
            let rows: Vec<Value> = boot
                .steps
                .iter()
                .map(|s| {
                    json!({
                        "at": format!("+{}", human_ms(s.at_ms.saturating_sub(boot.started_ms))),
                        "step": s.step.title(),
                        "details": s.step.details(),
                    })
                })
                .collect();
            self.table(
                &Value::Array(rows),
                &[("TIME", "at"), ("STEP", "step"), ("DETAILS", "details")],
            );
        }
    }

    pub(super) fn test_results(&self, v: &Value) {
        if self.json {
            return self.raw(v);
        }
        if v["status"].is_null() {
            println!("{}: no test results yet", cell(at(v, "system_id")));
            return;
        }
        println!(
            "{}: tests {} (recorded at {} ms)",
            cell(at(v, "system_id")),
            cell(at(v, "status")),
            cell(at(v, "recorded_ms"))
        );
        // Durations and throughput are worked out here, so the table shows what a person reads.
        let rows: Vec<Value> = v["results"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        let secs = r["finished_ms"]
                            .as_u64()
                            .zip(r["started_ms"].as_u64())
                            .map(|(f, s)| format!("{:.1}", f.saturating_sub(s) as f64 / 1000.0));
                        json!({
                            "name": r["name"],
                            "status": r["status"],
                            "disk": r["disk"],
                            "mib_s": r["throughput_mib_s"].as_f64().map(|t| format!("{t:.1}")),
                            "secs": secs,
                            "summary": r["summary"],
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.table(
            &Value::Array(rows),
            &[
                ("TEST", "name"),
                ("STATUS", "status"),
                ("DISK", "disk"),
                ("MIB/S", "mib_s"),
                ("SECONDS", "secs"),
                ("SUMMARY", "summary"),
            ],
        );
    }

    pub(super) fn events(&self, v: &Value) {
        self.table(
            v,
            &[
                ("SEQ", "seq"),
                ("MACHINE", "system_id"),
                ("ACTOR", "actor"),
                ("ACTION", "action"),
                ("FROM", "from"),
                ("TO", "to"),
                ("MESSAGE", "message"),
            ],
        );
    }
}
