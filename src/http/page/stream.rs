//! The live stream: one Server-Sent Events connection per tab, watching only what that tab shows
//! (`watch=row:ID,detail:ID,timeline:ID,...`, at most [`MAX_WATCHED`]). A committed change to a
//! watched machine, or a new step in its boot timeline, sends its fragments again (the list's row,
//! the machine page's summary and boot timeline), coalesced to one per machine every
//! [`COALESCE`], so progress reports and a boot's steps cost a few events a second however often
//! they come. A reconnect (the browser sends `Last-Event-ID`), a lagging stream and a deleted
//! machine send `resync`: the page reads its list again, so it never shows stale rows after a
//! daemon restart or a dropped connection.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Extension, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};

use super::Viewer;
use super::machines::{row_fragment, summary_fragment, timeline_fragment};
use crate::http::AppState;
use crate::service::{Principal, Service};

/// The most elements one tab may watch (a page shows at most 100 rows).
pub const MAX_WATCHED: usize = 200;
/// How long changes gather before their fragments go out.
pub const COALESCE: Duration = Duration::from_millis(400);

#[derive(Deserialize)]
pub(super) struct StreamQuery {
    #[serde(default)]
    watch: String,
    /// The event sequence number the page was rendered at: changes after it are sent at once
    /// (they may have come between the render and this connection).
    #[serde(default)]
    since: Option<u64>,
}

/// The most events a reconnect catches up on; beyond, the page reads everything again.
const MAX_CATCH_UP: usize = 1000;

/// What a tab shows of a machine.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Watched {
    Row(String),
    Detail(String),
    Timeline(String),
}

impl Watched {
    fn system_id(&self) -> &str {
        match self {
            Watched::Row(id) | Watched::Detail(id) | Watched::Timeline(id) => id,
        }
    }
}

fn parse_watch(list: &str) -> Vec<Watched> {
    list.split(',')
        .filter_map(|item| match item.split_once(':') {
            Some(("row", id)) if !id.is_empty() => Some(Watched::Row(id.to_string())),
            Some(("detail", id)) if !id.is_empty() => Some(Watched::Detail(id.to_string())),
            Some(("timeline", id)) if !id.is_empty() => Some(Watched::Timeline(id.to_string())),
            _ => None,
        })
        .take(MAX_WATCHED)
        .collect()
}

pub(super) async fn stream(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let watched = parse_watch(&q.watch);
    // A reconnect says where it was (`Last-Event-ID`, the event sequence number of the last
    // event it got); a first connection, where its page was rendered. A header that is not a
    // sequence number means: read everything again.
    let from = match headers.get("last-event-id") {
        Some(id) => Resume::From(id.to_str().ok().and_then(|v| v.trim().parse().ok())),
        None => q.since.map_or(Resume::Fresh, |n| Resume::From(Some(n))),
    };
    let (tx, rx) = mpsc::channel::<Event>(16);
    let changes = s.service.subscribe_changes();
    let steps = s.service.subscribe_timeline();
    tokio::spawn(feed(
        s.service.clone(),
        viewer.principal().clone(),
        watched,
        (changes, steps, s.closing.subscribe()),
        tx,
        from,
    ));
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Sends the tab its fragments until it goes away.
async fn feed(
    service: std::sync::Arc<Service>,
    principal: Principal,
    watched: Vec<Watched>,
    (mut changes, mut steps, mut closing): (
        broadcast::Receiver<crate::service::MachineChange>,
        broadcast::Receiver<String>,
        tokio::sync::watch::Receiver<bool>,
    ),
    tx: mpsc::Sender<Event>,
    from: Resume,
) {
    // Every event's id is the newest event sequence number when it was sent: what a
    // reconnect resumes from.
    let next_id = || service.last_event_seq().unwrap_or(0).to_string();
    let ids: BTreeSet<&str> = watched.iter().map(Watched::system_id).collect();
    let mut pending: BTreeSet<String> = BTreeSet::new();
    if let Resume::From(after) = from {
        let changed = after.and_then(|n| service.changed_since(n, MAX_CATCH_UP).ok().flatten());
        match changed {
            // Caught up: the watched machines that changed meanwhile go out at the first tick.
            Some(changed) => {
                pending.extend(changed.into_iter().filter(|id| ids.contains(id.as_str())))
            }
            None => {
                if tx.send(resync(next_id())).await.is_err() {
                    return;
                }
            }
        }
    }
    let mut tick = tokio::time::interval(COALESCE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Ok(c) if ids.contains(c.system_id.as_str()) => {
                    pending.insert(c.system_id);
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    pending.clear();
                    if tx.send(resync(next_id())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            step = steps.recv() => match step {
                Ok(id) if ids.contains(id.as_str()) => {
                    pending.insert(id);
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    pending.clear();
                    if tx.send(resync(next_id())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick(), if !pending.is_empty() => {
                for id in std::mem::take(&mut pending) {
                    let event = match service.machine(&principal, &id) {
                        Ok(m) => {
                            let mut html = String::new();
                            for w in watched.iter().filter(|w| w.system_id() == id) {
                                let fragment = match w {
                                    Watched::Row(_) => row_fragment(&m),
                                    Watched::Detail(_) => summary_fragment(&m),
                                    Watched::Timeline(_) => timeline_fragment(&service, &m),
                                };
                                match fragment {
                                    Ok(f) => html.push_str(&f),
                                    Err(error) => tracing::error!(%error, "a live fragment failed"),
                                }
                            }
                            Event::default().event("fragment").id(next_id()).data(html)
                        }
                        // Deleted, or no longer visible: the list is different now.
                        Err(_) => resync(next_id()),
                    };
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
            },
            _ = tx.closed() => return,
            // The daemon stops or restarts: the browser reconnects and resyncs.
            // (It turns only once, to true; a dropped sender is a stop too.)
            _ = closing.changed() => return,
        }
    }
}

/// Where a stream starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resume {
    /// A page that did not say when it was rendered: nothing to catch up on.
    Fresh,
    /// After this event sequence number (None: an id that is not one; read everything again).
    From(Option<u64>),
}

fn resync(id: String) -> Event {
    Event::default().event("resync").id(id).data("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_list_keeps_rows_and_details_and_drops_the_rest() {
        assert_eq!(
            parse_watch("row:a,detail:b,timeline:b,bogus,row:,x:y"),
            vec![
                Watched::Row("a".into()),
                Watched::Detail("b".into()),
                Watched::Timeline("b".into())
            ]
        );
        let long = vec!["row:x"; 500].join(",");
        assert_eq!(parse_watch(&long).len(), MAX_WATCHED);
    }
}
