//! The machines: the list (filtered, searched, sorted and paged on the server, grouped by status
//! if asked), one machine's detail, and the life-cycle actions with their confirmations, alone
//! or on many machines at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::Viewer;
use super::view::{
    self, ACTIONS, ActionChoice, Layout, MachineRow, Notice, Refusal, TimelineView, action_named,
    actions_for, render,
};
use crate::http::AppState;
use crate::model::catalog::CatalogKind;
use crate::model::{Event, Machine, PowerSettings, PowerState, SshKey, Status};
use crate::service::{
    ActionRequest, MachineEdit, MachineFilter, PowerRequest, Principal, Service, mask_power,
};

/// Rows on one page of the list: the browser never holds more.
const PAGE_ROWS: usize = 50;
/// The most rows a page may ask for.
const MAX_PAGE_ROWS: usize = 100;

/// What the list's form asks for: every field is a query parameter, so a list is a link.
#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    zone: String,
    #[serde(default)]
    pool: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    power: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    desc: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    after: String,
    #[serde(default)]
    rows: Option<usize>,
}

/// The columns a list sorts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SortBy {
    Hostname,
    Status,
    Owner,
    Zone,
    Pool,
    Power,
    SystemId,
}

impl SortBy {
    const ALL: [(SortBy, &'static str, &'static str); 7] = [
        (SortBy::Hostname, "hostname", "Host name"),
        (SortBy::Status, "status", "Status"),
        (SortBy::Power, "power", "Power"),
        (SortBy::Owner, "owner", "Owner"),
        (SortBy::Zone, "zone", "Zone / pool"),
        (SortBy::Pool, "pool", "Pool"),
        (SortBy::SystemId, "system_id", "System id"),
    ];

    fn parse(name: &str) -> SortBy {
        SortBy::ALL
            .iter()
            .find(|(_, key, _)| *key == name)
            .map(|(s, _, _)| *s)
            .unwrap_or(SortBy::Hostname)
    }

    /// The value a machine sorts by. Status sorts by its life-cycle number, zero-padded.
    fn value(self, m: &Machine) -> String {
        match self {
            SortBy::Hostname => m.hostname.clone(),
            SortBy::Status => format!("{:03}", m.status.code()),
            SortBy::Owner => m.owner.clone().unwrap_or_default(),
            SortBy::Zone => m.zone.clone(),
            SortBy::Pool => m.pool.clone(),
            SortBy::Power => m.power_state.state.as_str().into(),
            SortBy::SystemId => String::new(),
        }
    }
}

/// The position after which the next page starts: the last row's sort value and system id,
/// written `value~system_id` (system ids hold no `~`). A keyset, not an offset: a machine added
/// or removed meanwhile shifts no row between pages.
fn cursor_of(value: &str, system_id: &str) -> String {
    format!("{value}~{system_id}")
}

fn parse_cursor(cursor: &str) -> Option<(&str, &str)> {
    cursor.rsplit_once('~')
}

/// A column heading: its label, the link that sorts by it, and how it sorts now.
pub(super) struct SortLink {
    label: &'static str,
    href: String,
    /// `aria-sort` of the heading.
    aria: &'static str,
}

/// A group of the list (one status when grouped by status).
pub(super) struct Group {
    title: String,
    /// Machines in the group over the whole filtered list, not only this page.
    count: usize,
    rows: Vec<MachineRow>,
}

#[derive(Template)]
#[template(path = "page/machines.html")]
struct MachinesPage {
    layout: Option<Layout>,
    query: ListQuery,
    /// The groups of this page (one, untitled, when not grouped).
    groups: Vec<Group>,
    grouped: bool,
    /// Machines that match the filter.
    matching: usize,
    /// Machines the viewer may see.
    visible: usize,
    shown: usize,
    next_href: String,
    first_href: String,
    sort_links: Vec<SortLink>,
    statuses: Vec<(&'static str, &'static str)>,
    powers: Vec<&'static str>,
    actions: &'static [ActionChoice],
    edits: &'static [(BulkEdit, &'static str, &'static str, bool)],
    /// Zone, pool and tag names, offered for the bulk edits' value.
    catalog_names: Vec<String>,
    /// Whether a status change can move a row out of this list or between its groups.
    status_sensitive: bool,
    notice: Option<Notice>,
}

impl ListQuery {
    fn filter(&self) -> MachineFilter {
        let given = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        MachineFilter {
            status: given(&self.status),
            owner: given(&self.owner),
            zone: given(&self.zone),
            pool: given(&self.pool),
            tag: given(&self.tag),
            q: given(&self.q),
            power_state: match self.power.as_str() {
                "on" => Some(PowerState::On),
                "off" => Some(PowerState::Off),
                "unknown" => Some(PowerState::Unknown),
                "error" => Some(PowerState::Error),
                _ => None,
            },
            limit: Some(0),
            ..MachineFilter::default()
        }
    }

    /// This list's link with some parameters changed.
    fn href(&self, change: impl FnOnce(&mut ListQuery)) -> String {
        let mut q = self.clone();
        change(&mut q);
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("q", &q.q),
            ("status", &q.status),
            ("owner", &q.owner),
            ("zone", &q.zone),
            ("pool", &q.pool),
            ("tag", &q.tag),
            ("power", &q.power),
            ("sort", &q.sort),
            ("desc", &q.desc),
            ("group", &q.group),
            ("after", &q.after),
        ] {
            if !v.is_empty() {
                out.append_pair(k, v);
            }
        }
        if let Some(rows) = q.rows {
            out.append_pair("rows", &rows.to_string());
        }
        format!("/machines?{}", out.finish())
    }
}

/// Sorts the matching machines, groups them if asked, and cuts the page after the cursor.
fn build_list(
    items: Vec<Arc<Machine>>,
    q: &ListQuery,
) -> (Vec<Group>, usize, Option<String>, usize) {
    let sort = SortBy::parse(&q.sort);
    let desc = q.desc == "1";
    let grouped = q.group == "status";
    let mut keyed: Vec<(String, Arc<Machine>)> = items
        .into_iter()
        .map(|m| {
            let mut value = sort.value(&m);
            if grouped {
                value = format!("{:03}\u{1}{value}", m.status.code());
            }
            (value, m)
        })
        .collect();
    keyed.sort_by(|(a, ma), (b, mb)| {
        let order = a.cmp(b).then_with(|| ma.system_id.cmp(&mb.system_id));
        if desc { order.reverse() } else { order }
    });
    let mut counts: BTreeMap<Status, usize> = BTreeMap::new();
    if grouped {
        for (_, m) in &keyed {
            *counts.entry(m.status).or_default() += 1;
        }
    }
    let start = match parse_cursor(&q.after) {
        Some((value, id)) => keyed
            .iter()
            .position(|(v, m)| {
                let order = (v.as_str(), m.system_id.as_str()).cmp(&(value, id));
                if desc { order.is_lt() } else { order.is_gt() }
            })
            .unwrap_or(keyed.len()),
        None => 0,
    };
    let rows = q.rows.unwrap_or(PAGE_ROWS).clamp(1, MAX_PAGE_ROWS);
    let page: Vec<&(String, Arc<Machine>)> = keyed.iter().skip(start).take(rows).collect();
    let next = (start + page.len() < keyed.len())
        .then(|| page.last().map(|(v, m)| cursor_of(v, &m.system_id)))
        .flatten();
    let shown = page.len();
    let mut groups: Vec<Group> = Vec::new();
    for (_, m) in page {
        let title = if grouped {
            m.status.name().to_string()
        } else {
            String::new()
        };
        match groups.last_mut() {
            Some(g) if g.title == title => g.rows.push(MachineRow::of(m)),
            _ => groups.push(Group {
                count: if grouped {
                    counts.get(&m.status).copied().unwrap_or(0)
                } else {
                    0
                },
                title,
                rows: vec![MachineRow::of(m)],
            }),
        }
    }
    (groups, shown, next, keyed.len())
}

fn list_page(
    s: &AppState,
    viewer: &Viewer,
    q: ListQuery,
    notice: Option<Notice>,
) -> Result<Response, Refusal> {
    let p = viewer.principal();
    let matching = s.service.list_machines(p, &q.filter())?;
    let visible = s
        .service
        .list_machines(
            p,
            &MachineFilter {
                limit: Some(1),
                ..MachineFilter::default()
            },
        )?
        .total;
    let (groups, shown, next, matching_count) = build_list(matching.items, &q);
    let sort = SortBy::parse(&q.sort);
    let desc = q.desc == "1";
    let sort_links = SortBy::ALL
        .iter()
        .filter(|(s, _, _)| !matches!(s, SortBy::SystemId | SortBy::Pool))
        .map(|(by, key, label)| SortLink {
            label,
            href: q.href(|n| {
                n.sort = key.to_string();
                n.desc = if *by == sort && !desc {
                    "1".into()
                } else {
                    String::new()
                };
                n.after.clear();
            }),
            aria: match (*by == sort, desc) {
                (true, false) => "ascending",
                (true, true) => "descending",
                _ => "none",
            },
        })
        .collect();
    let page = MachinesPage {
        layout: Some(Layout::new(viewer, "machines")),
        grouped: q.group == "status",
        status_sensitive: q.group == "status"
            || sort == SortBy::Status
            || !q.status.is_empty()
            || !q.q.is_empty(),
        next_href: next
            .map(|cursor| q.href(|n| n.after = cursor))
            .unwrap_or_default(),
        first_href: q.href(|n| n.after.clear()),
        query: q,
        groups,
        matching: matching_count,
        visible,
        shown,
        sort_links,
        statuses: Status::ALL.iter().map(|s| (s.key(), s.name())).collect(),
        powers: vec!["on", "off", "unknown", "error"],
        actions: ACTIONS,
        edits: &BulkEdit::ALL,
        catalog_names: catalog_names(s),
        notice,
    };
    Ok(render(&page))
}

/// Every zone, pool and tag name, sorted, once each.
fn catalog_names(s: &AppState) -> Vec<String> {
    let mut names: Vec<String> = [CatalogKind::Zone, CatalogKind::Pool, CatalogKind::Tag]
        .into_iter()
        .flat_map(|kind| s.service.list_catalog(kind).unwrap_or_default())
        .map(|t| t.name)
        .collect();
    names.sort();
    names.dedup();
    names
}

pub(super) async fn list(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Refusal> {
    list_page(&s, &viewer, q, None)
}

/// A life-cycle action's form: what it asks for besides the confirmation. Read by hand, not
/// by serde, because a deploy's SSH keys are one repeated `ssh_key` field.
#[derive(Clone, Debug, Default)]
pub(super) struct ActionForm {
    generation: Option<u64>,
    image: String,
    user_data: String,
    erase: String,
    reason: String,
    comment: String,
    run_tests: bool,
    /// The ticked keys' ids, when the form offered a choice (`ssh_keys_chosen`): unticking
    /// every key sends no field at all, which must mean "none", not "all".
    ssh_key_ids: Option<Vec<u32>>,
}

impl ActionForm {
    /// The form's fields; the unknown ones are left for the caller (`other`).
    fn parse(body: &[u8], mut other: impl FnMut(&str, String)) -> ActionForm {
        let mut f = ActionForm::default();
        let mut keys = Vec::new();
        let mut chosen = false;
        for (k, v) in form_urlencoded::parse(body) {
            let v = v.into_owned();
            match k.as_ref() {
                "generation" => f.generation = v.trim().parse().ok(),
                "image" => f.image = v,
                "user_data" => f.user_data = v,
                "erase" => f.erase = v,
                "reason" => f.reason = v,
                "comment" => f.comment = v,
                "run_tests" => f.run_tests = true,
                "ssh_keys_chosen" => chosen = true,
                "ssh_key" => keys.extend(v.trim().parse::<u32>().ok()),
                name => other(name, v),
            }
        }
        f.ssh_key_ids = chosen.then_some(keys);
        f
    }

    fn request(&self) -> ActionRequest {
        let given = |s: &str| (!s.trim().is_empty()).then(|| s.to_string());
        ActionRequest {
            generation: self.generation,
            run_tests: self.run_tests,
            image: given(&self.image),
            user_data: given(&self.user_data),
            ssh_key_ids: self.ssh_key_ids.clone(),
            erase: given(&self.erase),
            reason: given(&self.reason),
            comment: given(&self.comment),
            ..ActionRequest::default()
        }
    }
}

/// One image a deploy may choose.
pub(super) struct ImageChoice {
    name: String,
    title: String,
    default: bool,
}

#[derive(Template)]
#[template(path = "page/machine.html")]
struct MachinePage {
    layout: Option<Layout>,
    m: Arc<Machine>,
    row: MachineRow,
    actions: Vec<ActionChoice>,
    images: Vec<ImageChoice>,
    ssh_keys: Vec<SshKey>,
    power: PowerSettings,
    events: Vec<EventRow>,
    timeline: TimelineView,
    /// When the latest hardware test run was recorded, and its tests.
    tests_at: Option<String>,
    tests: Vec<TestRow>,
    notice: Option<Notice>,
}

/// One hardware test of the machine's latest run, ready to print.
pub(super) struct TestRow {
    name: String,
    /// "passed", "failed" or "skipped", with the status class for its marker.
    status: &'static str,
    class: &'static str,
    took: String,
    summary: String,
}

/// The machine's latest hardware test run: when, and each test.
fn test_rows(s: &AppState, p: &Principal, system_id: &str) -> (Option<String>, Vec<TestRow>) {
    use crate::model::TestStatus;
    let Ok(run) = s.service.test_results(p, system_id) else {
        return (None, Vec::new());
    };
    let rows = run
        .results
        .iter()
        .map(|t| {
            let (status, class) = match t.status {
                TestStatus::Passed => ("passed", "ok"),
                TestStatus::Failed => ("failed", "bad"),
                TestStatus::Skipped => ("skipped", "warn"),
            };
            let mut summary = t.summary.clone();
            if let Some(disk) = &t.disk {
                summary = format!("{disk}: {summary}");
            }
            if let Some(rate) = t.throughput_mib_s {
                summary = format!("{summary} ({rate:.0} MiB/s)");
            }
            TestRow {
                name: t.name.clone(),
                status,
                class,
                took: crate::model::units::human_duration(
                    t.finished_ms.saturating_sub(t.started_ms) / 1000,
                ),
                summary,
            }
        })
        .collect();
    (run.recorded_ms.map(view::time), rows)
}

/// An event of the machine's history, ready to print.
pub(super) struct EventRow {
    at: String,
    actor: String,
    action: String,
    change: String,
    message: String,
}

impl EventRow {
    fn of(e: &Event) -> EventRow {
        EventRow {
            at: view::time(e.at_ms),
            actor: e.actor.clone(),
            action: e.action.clone(),
            change: if e.from == e.to {
                e.to.name().into()
            } else {
                format!("{} → {}", e.from.name(), e.to.name())
            },
            message: e.message.clone(),
        }
    }
}

fn images_for(s: &AppState) -> Vec<ImageChoice> {
    match s.images.list_images() {
        Ok(list) => list
            .images
            .into_iter()
            .map(|v| ImageChoice {
                title: if v.image.title.is_empty() {
                    format!("{} {} {}", v.image.os, v.image.release, v.image.arch)
                } else {
                    v.image.title.clone()
                },
                name: v.image.name,
                default: v.default,
            })
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "the control page could not list images");
            Vec::new()
        }
    }
}

/// The keys a deploy may install: the owner's (which a viewer who is not the owner or an admin
/// cannot read, and then sees none).
fn ssh_keys_of(s: &AppState, p: &Principal, owner: &str) -> Vec<SshKey> {
    s.service
        .user(p, owner)
        .map(|u| u.ssh_keys)
        .unwrap_or_default()
}

fn detail_page(
    s: &AppState,
    viewer: &Viewer,
    system_id: &str,
    notice: Option<Notice>,
) -> Result<MachinePage, Refusal> {
    let p = viewer.principal();
    let m = s.service.machine(p, system_id)?;
    let events = s.service.machine_events(p, system_id, None, 50)?;
    let timeline = TimelineView::of(&s.service.boot_timeline_of(&m));
    let owner = m.owner.clone().unwrap_or_else(|| p.username.clone());
    let (tests_at, tests) = test_rows(s, p, system_id);
    Ok(MachinePage {
        layout: Some(Layout::new(viewer, "machines")),
        row: MachineRow::of(&m),
        actions: actions_for(&m),
        images: images_for(s),
        ssh_keys: ssh_keys_of(s, p, &owner),
        power: if p.is_admin() {
            m.power.clone()
        } else {
            mask_power(&m.power)
        },
        events: events.iter().map(EventRow::of).collect(),
        timeline,
        tests_at,
        tests,
        m,
        notice,
    })
}

pub(super) async fn detail(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(system_id): Path<String>,
) -> Result<Response, Refusal> {
    Ok(render(&detail_page(&s, &viewer, &system_id, None)?))
}

#[derive(Template)]
#[template(path = "page/confirm.html")]
struct ConfirmPage {
    layout: Option<Layout>,
    page: MachinePage,
    action: ActionChoice,
}

/// The confirmation of one action as a page of its own, for browsers without JavaScript (with
/// it, the same form opens in a dialog on the machine's page).
pub(super) async fn confirm(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path((system_id, action)): Path<(String, String)>,
) -> Result<Response, Refusal> {
    let action = action_named(&action).ok_or_else(|| Refusal {
        status: StatusCode::NOT_FOUND,
        message: format!("there is no action {action:?}"),
    })?;
    let page = detail_page(&s, &viewer, &system_id, None)?;
    Ok(render(&ConfirmPage {
        layout: Some(Layout::new(&viewer, "machines")),
        page,
        action,
    }))
}

/// Carries out an action; the machine's page follows (303), or shows why it was refused, with
/// the refusal's status (409 with the machine's status for an action its status does not allow).
pub(super) async fn act(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path((system_id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let form = ActionForm::parse(&body, |_, _| {});
    let p = viewer.principal();
    match s.service.act(p, &system_id, &action, form.request()).await {
        Ok(_) => Ok(Redirect::to(&format!("/machines/{system_id}")).into_response()),
        Err(e) => {
            let refusal = Refusal::from(e);
            let label = action_named(&action)
                .map(|a| a.label)
                .unwrap_or("The action");
            let page = detail_page(
                &s,
                &viewer,
                &system_id,
                Some(Notice {
                    error: true,
                    title: format!("{label} was refused"),
                    lines: vec![refusal.message.clone()],
                }),
            )?;
            Ok((refusal.status, render(&page)).into_response())
        }
    }
}

/// The list's bulk form: the ticked machines, the operation, and its value (a tag, zone or
/// pool name) when it takes one.
#[derive(Debug, Default)]
pub(super) struct BulkForm {
    machines: Vec<String>,
    action: String,
    value: String,
    back: String,
    form: ActionForm,
}

impl BulkForm {
    fn parse(body: &[u8]) -> BulkForm {
        let (mut machines, mut action, mut value, mut back) =
            (Vec::new(), String::new(), String::new(), String::new());
        let form = ActionForm::parse(body, |name, v| match name {
            "machine" => machines.push(v),
            "action" => action = v,
            "value" => value = v.trim().to_string(),
            "back" => back = v,
            _ => {}
        });
        BulkForm {
            machines,
            action,
            value,
            back,
            form,
        }
    }
}

/// What the bulk form can do to each ticked machine besides the life-cycle actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BulkEdit {
    PowerOn,
    PowerOff,
    AddTag,
    RemoveTag,
    Zone,
    Pool,
}

impl BulkEdit {
    /// Each edit: its form value, its label, and whether it needs a name in `value`.
    pub(super) const ALL: [(BulkEdit, &'static str, &'static str, bool); 6] = [
        (BulkEdit::PowerOn, "power_on", "Power on", false),
        (BulkEdit::PowerOff, "power_off", "Power off", false),
        (BulkEdit::AddTag, "add_tag", "Add the tag", true),
        (BulkEdit::RemoveTag, "remove_tag", "Remove the tag", true),
        (BulkEdit::Zone, "zone", "Move to the zone", true),
        (BulkEdit::Pool, "pool", "Move to the pool", true),
    ];

    fn named(name: &str) -> Option<(BulkEdit, &'static str, bool)> {
        BulkEdit::ALL
            .iter()
            .find(|(_, key, _, _)| *key == name)
            .map(|(e, _, label, needs)| (*e, *label, *needs))
    }

    /// Does it to one machine; the machine as it is afterwards.
    async fn apply(
        self,
        s: &AppState,
        p: &Principal,
        id: &str,
        value: &str,
    ) -> Result<Machine, crate::service::ServiceError> {
        let edit = |change: fn(&mut MachineEdit, String)| {
            let mut e = MachineEdit::default();
            change(&mut e, value.to_string());
            e
        };
        match self {
            BulkEdit::PowerOn => s.service.power_switch(p, id, PowerRequest::On).await,
            BulkEdit::PowerOff => {
                let off = PowerRequest::Off { soft: false };
                s.service.power_switch(p, id, off).await
            }
            BulkEdit::AddTag => {
                let e = edit(|e, v| e.add_tags = vec![v]);
                s.service.edit_machine(p, id, e).await
            }
            BulkEdit::RemoveTag => {
                let e = edit(|e, v| e.remove_tags = vec![v]);
                s.service.edit_machine(p, id, e).await
            }
            BulkEdit::Zone => {
                s.service
                    .edit_machine(p, id, edit(|e, v| e.zone = Some(v)))
                    .await
            }
            BulkEdit::Pool => {
                s.service
                    .edit_machine(p, id, edit(|e, v| e.pool = Some(v)))
                    .await
            }
        }
    }
}

/// One operation of the bulk form.
enum BulkOp {
    Act(ActionChoice),
    Edit(BulkEdit),
}

/// An action or edit on every ticked machine: each is tried on its own, and the list says which
/// were done and why each other one was refused.
pub(super) async fn bulk(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let f = BulkForm::parse(&body);
    let back: ListQuery = f
        .back
        .split_once('?')
        .and_then(|(_, query)| serde_urlencoded_query(query))
        .unwrap_or_default();
    let op = match (action_named(&f.action), BulkEdit::named(&f.action)) {
        (Some(a), _) => Ok((BulkOp::Act(a), a.label)),
        (None, Some((_, label, true))) if f.value.is_empty() => Err(Notice::error(
            &format!("{label}: say which one"),
            vec!["write the tag, zone or pool name in the box beside the operation".into()],
        )),
        (None, Some((edit, label, _))) => Ok((BulkOp::Edit(edit), label)),
        (None, None) => Err(Notice::error(
            "Choose an action",
            vec![format!("{:?} is not an action", f.action)],
        )),
    };
    let (op, label) = match op {
        Ok((_, label)) if f.machines.is_empty() => {
            let notice = Notice::error(&format!("{label}: no machine was ticked"), Vec::new());
            return list_page(&s, &viewer, back, Some(notice));
        }
        Ok(op) => op,
        Err(notice) => return list_page(&s, &viewer, back, Some(notice)),
    };
    let p = viewer.principal();
    let mut lines = Vec::new();
    let mut refused = 0;
    for id in f.machines.iter().take(MAX_PAGE_ROWS) {
        let hostname = s
            .service
            .machine(p, id)
            .map(|m| m.hostname.clone())
            .unwrap_or_else(|_| id.clone());
        let result = match &op {
            BulkOp::Act(a) => s.service.act(p, id, a.name(), f.form.request()).await,
            BulkOp::Edit(edit) => edit.apply(&s, p, id, &f.value).await,
        };
        match result {
            Ok(m) => lines.push(format!("{hostname}: done, now {}", m.status.name())),
            Err(e) => {
                refused += 1;
                lines.push(format!("{hostname}: refused: {e}"));
            }
        }
    }
    let done = f.machines.len().min(MAX_PAGE_ROWS) - refused;
    let title = match f.value.is_empty() {
        true => format!("{label}: {done} done, {refused} refused"),
        false => format!("{label} {}: {done} done, {refused} refused", f.value),
    };
    let notice = Notice {
        error: refused > 0,
        title,
        lines,
    };
    list_page(&s, &viewer, back, Some(notice))
}

/// The list's query from a `back` link's query string.
fn serde_urlencoded_query(query: &str) -> Option<ListQuery> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    Some(ListQuery {
        q: get("q"),
        status: get("status"),
        owner: get("owner"),
        zone: get("zone"),
        pool: get("pool"),
        tag: get("tag"),
        power: get("power"),
        sort: get("sort"),
        desc: get("desc"),
        group: get("group"),
        after: get("after"),
        rows: get("rows").parse().ok(),
    })
}

/// The row of one machine, for the live stream.
pub(super) fn row_fragment(m: &Machine) -> Result<String, askama::Error> {
    RowFragment {
        row: MachineRow::of(m),
    }
    .render()
}

#[derive(Template)]
#[template(path = "page/row.html")]
struct RowFragment {
    row: MachineRow,
}

/// The summary of one machine's page (status, power, progress), for the live stream.
pub(super) fn summary_fragment(m: &Machine) -> Result<String, askama::Error> {
    SummaryFragment {
        row: MachineRow::of(m),
        m,
    }
    .render()
}

#[derive(Template)]
#[template(path = "page/summary.html")]
struct SummaryFragment<'a> {
    row: MachineRow,
    m: &'a Machine,
}

/// The boot timeline of one machine's page, for the live stream.
pub(super) fn timeline_fragment(service: &Service, m: &Machine) -> Result<String, askama::Error> {
    TimelineFragment {
        timeline: TimelineView::of(&service.boot_timeline_of(m)),
    }
    .render()
}

#[derive(Template)]
#[template(path = "page/timeline.html")]
struct TimelineFragment {
    timeline: TimelineView,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::page::view::ProgressView;
    use crate::model::ActionKind;

    fn machine(id: &str, hostname: &str, status: Status) -> Arc<Machine> {
        let mut m: Machine = serde_json::from_value(serde_json::json!({
            "system_id": id, "hostname": hostname, "status": status, "generation": 1,
            "architecture": "amd64/generic", "zone": "default", "pool": "default",
            "created_ms": 0, "updated_ms": 0
        }))
        .expect("a machine");
        m.status = status;
        Arc::new(m)
    }

    #[test]
    fn pages_follow_one_another_by_keyset_without_gaps_or_repeats() {
        let items: Vec<_> = (0..7)
            .map(|i| machine(&format!("id{i}"), &format!("h{}", 7 - i), Status::Ready))
            .collect();
        let mut q = ListQuery {
            rows: Some(3),
            ..ListQuery::default()
        };
        let mut seen = Vec::new();
        loop {
            let (groups, _, next, total) = build_list(items.clone(), &q);
            assert_eq!(total, 7);
            seen.extend(groups.into_iter().flat_map(|g| g.rows).map(|r| r.hostname));
            match next {
                Some(cursor) => q.after = cursor,
                None => break,
            }
        }
        assert_eq!(seen, ["h1", "h2", "h3", "h4", "h5", "h6", "h7"]);
    }

    #[test]
    fn grouped_lists_count_each_status_over_every_page() {
        let items = vec![
            machine("a", "a", Status::Ready),
            machine("b", "b", Status::Deployed),
            machine("c", "c", Status::Ready),
        ];
        let q = ListQuery {
            group: "status".into(),
            rows: Some(1),
            ..ListQuery::default()
        };
        let (groups, shown, next, _) = build_list(items, &q);
        assert_eq!(shown, 1);
        assert_eq!(groups[0].title, "Ready");
        assert_eq!(groups[0].count, 2);
        assert!(next.is_some());
    }

    #[test]
    fn an_unknown_action_kind_is_not_offered() {
        assert!(action_named("complete").is_none());
        assert_eq!(
            action_named("deploy").map(|a| a.kind),
            Some(ActionKind::Deploy)
        );
    }

    #[test]
    fn a_progress_without_numbers_still_says_its_step() {
        let mut m = (*machine("a", "a", Status::Deploying)).clone();
        m.progress = Some(crate::model::TaskProgress {
            status: Status::Deploying,
            step: "writing image".into(),
            percent: Some(50.0),
            bytes: Some(512 * 1024 * 1024),
            started_ms: 0,
            at_ms: 4_000,
        });
        let p = ProgressView::of(&m).expect("progress");
        assert_eq!(p.percent, Some(50));
        assert_eq!(
            p.text,
            "writing image: 512.0 MiB of 1.0 GiB, 50%, 128.0 MiB/s, 4 s left"
        );
    }
}
