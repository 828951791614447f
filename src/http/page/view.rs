//! What the templates show, worked out in Rust: each value is a string or number ready to print
//! (the templates only lay it out and escape it), so a template cannot get a number's format or
//! a status's wording wrong, and the same row renders the same in a page and in a live update.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::Viewer;
use crate::model::lifecycle::{self, ActionKind};
use crate::model::{Machine, PowerState, Status};

/// The layout every page shares: who is logged in, the CSRF token its forms carry, and which
/// section of the navigation is current.
pub struct Layout {
    pub username: String,
    pub is_admin: bool,
    pub csrf: String,
    pub section: &'static str,
    /// Where the page's live stream starts (see [`Viewer::event_seq`]).
    pub event_seq: u64,
}

impl Layout {
    pub fn new(viewer: &Viewer, section: &'static str) -> Layout {
        Layout {
            username: viewer.principal().username.clone(),
            is_admin: viewer.principal().is_admin(),
            csrf: viewer.session.csrf_token.clone(),
            section,
            event_seq: viewer.event_seq,
        }
    }

    /// `aria-current="page"` on the current section's link.
    pub fn current(&self, section: &str) -> &'static str {
        if self.section == section {
            "page"
        } else {
            "false"
        }
    }
}

/// What an action did, said above the list or the machine.
pub struct Notice {
    pub error: bool,
    pub title: String,
    pub lines: Vec<String>,
}

impl Notice {
    /// A refusal, with its reasons.
    pub fn error(title: &str, lines: Vec<String>) -> Notice {
        Notice {
            error: true,
            title: title.to_string(),
            lines,
        }
    }
}

/// A page's form, done: back to the page (303) when it worked, or the page again saying why it
/// was refused, under the refusal's status (409 for a conflict, 400 for bad input...).
pub fn after_form<T: Template>(
    outcome: Result<(), Refusal>,
    back: &str,
    title: &str,
    page: impl FnOnce(Notice) -> Result<T, Refusal>,
) -> Result<Response, Refusal> {
    match outcome {
        Ok(()) => Ok(Redirect::to(back).into_response()),
        Err(e) => {
            let page = page(Notice::error(title, vec![e.message.clone()]))?;
            Ok((e.status, render(&page)).into_response())
        }
    }
}

/// A refusal or failure, shown as a page with the reason.
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl From<crate::service::ServiceError> for Refusal {
    fn from(e: crate::service::ServiceError) -> Refusal {
        Refusal {
            status: StatusCode::from_u16(e.kind().http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: e.to_string(),
        }
    }
}

#[derive(Template)]
#[template(path = "page/refusal.html")]
struct RefusalPage<'a> {
    layout: Option<Layout>,
    status: u16,
    reason: &'a str,
    message: &'a str,
}

/// A page that says why a request was refused, with its status.
pub fn refusal(status: StatusCode, message: &str) -> Response {
    let page = RefusalPage {
        layout: None,
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("Refused"),
        message,
    };
    (status, render(&page)).into_response()
}

/// Renders a template into an HTML answer; a template that fails (it cannot, short of a bug) is
/// a 500 with the reason logged.
pub fn render<T: Template>(template: &T) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, "a control page template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// Percent-encodes a query value.
pub fn url_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

pub use crate::model::units::{human_bytes as bytes, human_duration as duration};

/// A unix-milliseconds time as UTC "2026-12-06 21:30:05".
pub fn time(ms: u64) -> String {
    let (year, month, day, rest) = crate::model::ids::utc_date(ms);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// How a status reads at a glance; the status's name is always written beside it.
pub fn status_class(status: Status) -> &'static str {
    match status {
        s if s.name().to_lowercase().contains("failed") => "bad",
        Status::Ready | Status::Deployed => "ok",
        Status::Broken => "bad",
        s if s.is_in_progress() => "busy",
        Status::New | Status::Allocated | Status::RescueMode => "warn",
        _ => "",
    }
}

/// A task's progress as a bar and words: "3.2 GiB of 8.0 GiB, 112.0 MiB/s, 40 s left".
pub struct ProgressView {
    /// Percent, for `<progress value max=100>`; None when the agent cannot tell (the bar is
    /// then indeterminate).
    pub percent: Option<u8>,
    pub text: String,
}

impl ProgressView {
    pub fn of(m: &Machine) -> Option<ProgressView> {
        let p = m.progress.as_ref().filter(|p| p.status == m.status)?;
        let mut parts = Vec::new();
        match (p.bytes, p.total_bytes()) {
            (Some(done), Some(total)) => parts.push(format!("{} of {}", bytes(done), bytes(total))),
            (Some(done), None) => parts.push(bytes(done)),
            _ => {}
        }
        if let Some(percent) = p.percent {
            parts.push(format!("{percent:.0}%"));
        }
        if let Some(rate) = p.rate_bytes_per_sec() {
            parts.push(format!("{}/s", bytes(rate as u64)));
        }
        if let Some(left) = p.seconds_left() {
            parts.push(format!("{} left", duration(left)));
        }
        Some(ProgressView {
            percent: p.percent.map(|x| x.round() as u8),
            text: format!("{}: {}", p.step, parts.join(", ")),
        })
    }
}

/// One machine as a row of the list (and the live update of that row).
pub struct MachineRow {
    pub system_id: String,
    pub hostname: String,
    pub status_key: &'static str,
    pub status_name: &'static str,
    pub status_class: &'static str,
    pub message: String,
    pub owner: String,
    pub zone: String,
    pub pool: String,
    pub tags: String,
    pub power: &'static str,
    pub power_message: String,
    pub cpu_count: u32,
    pub memory: String,
    pub storage: String,
    pub mac: String,
    pub locked: bool,
    pub progress: Option<ProgressView>,
}

impl MachineRow {
    pub fn of(m: &Machine) -> MachineRow {
        MachineRow {
            system_id: m.system_id.clone(),
            hostname: m.hostname.clone(),
            status_key: m.status.key(),
            status_name: m.status.name(),
            status_class: status_class(m.status),
            message: m.status_message.clone(),
            owner: m.owner.clone().unwrap_or_default(),
            zone: m.zone.clone(),
            pool: m.pool.clone(),
            tags: m.tags.iter().cloned().collect::<Vec<_>>().join(", "),
            power: m.power_state.state.as_str(),
            power_message: if m.power_state.state == PowerState::Error {
                m.power_state.message.clone()
            } else {
                String::new()
            },
            cpu_count: m.cpu_count,
            memory: if m.memory_mib == 0 {
                String::new()
            } else {
                bytes(m.memory_mib * 1024 * 1024)
            },
            storage: if m.disks.is_empty() {
                String::new()
            } else {
                bytes(m.storage_bytes())
            },
            mac: m
                .boot_interface()
                .map(|i| i.mac.clone())
                .unwrap_or_default(),
            locked: m.locked,
            progress: ProgressView::of(m),
        }
    }
}

/// A life-cycle action as the page offers it: its name on the wire, its label, and whether it
/// asks for more than a confirmation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActionChoice {
    pub kind: ActionKind,
    pub label: &'static str,
    /// Why a user would do it, said in the confirmation.
    pub explain: &'static str,
    /// Destroys data or takes a machine from its user: the button is marked as dangerous.
    pub danger: bool,
}

impl ActionChoice {
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }
}

/// The actions a user asks for (the machine reports the others), in the order the page lists
/// them.
pub const ACTIONS: &[ActionChoice] = &[
    ActionChoice {
        kind: ActionKind::Commission,
        label: "Commission",
        explain: "Boots the machine into the ephemeral ramdisk and takes its hardware inventory.",
        danger: false,
    },
    ActionChoice {
        kind: ActionKind::Test,
        label: "Test hardware",
        explain: "Boots the ramdisk and runs the hardware tests (CPU, memory, disks).",
        danger: false,
    },
    ActionChoice {
        kind: ActionKind::Allocate,
        label: "Allocate",
        explain: "Takes the machine from the pool for you, without deploying it.",
        danger: false,
    },
    ActionChoice {
        kind: ActionKind::Deploy,
        label: "Deploy",
        explain: "Writes an operating system image to the machine's disk with your SSH keys and user data, and boots it.",
        danger: false,
    },
    ActionChoice {
        kind: ActionKind::Release,
        label: "Release",
        explain: "Returns the machine to the pool; its disks are erased the way you choose.",
        danger: true,
    },
    ActionChoice {
        kind: ActionKind::Abort,
        label: "Abort",
        explain: "Stops the action under way and powers the machine off.",
        danger: true,
    },
    ActionChoice {
        kind: ActionKind::RescueMode,
        label: "Rescue mode",
        explain: "Boots the ramdisk with SSH for its owner, leaving the disks alone.",
        danger: false,
    },
    ActionChoice {
        kind: ActionKind::ExitRescueMode,
        label: "Exit rescue mode",
        explain: "Powers the machine off and returns it to its status before rescue mode.",
        danger: false,
    },
    ActionChoice {
        kind: ActionKind::MarkBroken,
        label: "Mark broken",
        explain: "Takes the machine out of service until it is marked fixed.",
        danger: true,
    },
    ActionChoice {
        kind: ActionKind::MarkFixed,
        label: "Mark fixed",
        explain: "Returns a broken machine to service (it commissions again when needed).",
        danger: false,
    },
    ActionChoice {
        kind: ActionKind::OverrideFailedTesting,
        label: "Override failed testing",
        explain: "Treats the failed hardware tests as passed and makes the machine Ready.",
        danger: true,
    },
    ActionChoice {
        kind: ActionKind::Lock,
        label: "Lock",
        explain: "Refuses every action that would change the machine until it is unlocked.",
        danger: false,
    },
    ActionChoice {
        kind: ActionKind::Unlock,
        label: "Unlock",
        explain: "Lets the machine be changed again.",
        danger: false,
    },
];

/// The action a page names, if it is one a user may ask for.
pub fn action_named(name: &str) -> Option<ActionChoice> {
    ACTIONS.iter().copied().find(|a| a.name() == name)
}

/// The actions the machine's status allows now (lock and unlock by the lock itself).
pub fn actions_for(m: &Machine) -> Vec<ActionChoice> {
    ACTIONS
        .iter()
        .copied()
        .filter(|a| match a.kind {
            ActionKind::Lock => !m.locked,
            ActionKind::Unlock => m.locked,
            kind => !m.locked && lifecycle::rule(m.status, kind).is_some(),
        })
        .collect()
}

/// A machine's boot timeline as the page prints it: the current boot, then the previous one.
pub struct TimelineView {
    pub system_id: String,
    /// None, one or two: empty when no boot was seen since the daemon started.
    pub boots: Vec<BootView>,
}

/// One boot: when it began, on which interface, its steps.
pub struct BootView {
    /// "Current boot" or "Previous boot".
    pub title: &'static str,
    /// Tells the two tables' ids apart.
    pub key: &'static str,
    pub mac: String,
    /// UTC, like the history's times.
    pub started: String,
    pub steps: Vec<StepRow>,
    /// Steps left out of a long boot (said above its table).
    pub dropped: u32,
}

/// One step, ready to print.
pub struct StepRow {
    /// Since the boot's first step: "+0.0 s", "+1 min 5 s".
    pub at: String,
    pub step: String,
    pub details: String,
}

impl BootView {
    fn of(title: &'static str, key: &'static str, boot: &crate::model::timeline::Boot) -> BootView {
        BootView {
            title,
            key,
            mac: boot.mac.clone(),
            started: time(boot.started_ms),
            steps: boot
                .steps
                .iter()
                .map(|s| StepRow {
                    at: format!(
                        "+{}",
                        crate::model::timeline::human_ms(s.at_ms.saturating_sub(boot.started_ms))
                    ),
                    step: s.step.title(),
                    details: s.step.details(),
                })
                .collect(),
            dropped: boot.dropped_steps,
        }
    }
}

impl TimelineView {
    pub fn of(t: &crate::model::timeline::MachineTimeline) -> TimelineView {
        let current = t
            .current
            .as_ref()
            .map(|b| BootView::of("Current boot", "current", b));
        let previous = t
            .previous
            .as_ref()
            .map(|b| BootView::of("Previous boot", "previous", b));
        TimelineView {
            system_id: t.system_id.clone(),
            boots: current.into_iter().chain(previous).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_read_as_people_write_them() {
        assert_eq!(bytes(3 * 1024 * 1024 * 1024 + 200 * 1024 * 1024), "3.2 GiB");
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_796_592_605_000), "2026-12-06 21:30:05");
    }

    #[test]
    fn a_boot_reads_in_times_since_its_first_step_current_boot_first() {
        use crate::model::timeline::{Boot, BootStep, MachineTimeline, Step};
        let boot = |started_ms: u64| Boot {
            mac: "52:54:00:00:00:01".into(),
            started_ms,
            steps: vec![
                BootStep {
                    at_ms: started_ms,
                    step: Step::Inventory,
                },
                BootStep {
                    at_ms: started_ms + 1_250,
                    step: Step::OsReportedIn,
                },
            ],
            dropped_steps: 3,
        };
        let view = TimelineView::of(&MachineTimeline {
            system_id: "abc".into(),
            current: Some(boot(90_000)),
            previous: Some(boot(10_000)),
        });
        let titles: Vec<&str> = view.boots.iter().map(|b| b.title).collect();
        assert_eq!(titles, ["Current boot", "Previous boot"]);
        let times: Vec<&str> = view.boots[0].steps.iter().map(|s| s.at.as_str()).collect();
        assert_eq!(times, ["+0.0 s", "+1.2 s"]);
        assert_eq!(view.boots[0].steps[1].step, "OS reported in");
        assert_eq!(view.boots[0].dropped, 3);
        let empty = TimelineView::of(&MachineTimeline::default());
        assert!(empty.boots.is_empty());
    }
}
