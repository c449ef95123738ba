//! What changed, for `yardctl events` and the log: the control plane makes
//! an [`Event`] for each change a request made (and for ports its watcher
//! turned down or removed), logs it at info level with the requesting uid,
//! and hands it to every subscribed connection.
//!
//! Contract: subscribers get events in the order the changes were applied
//! (one lock orders them). A subscriber that does not keep up loses events
//! past [`EVENT_QUEUE`] rather than slowing yardd; one that went away is
//! forgotten at the next event. Nothing here runs per frame.

use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use yard_ctl::api::{Event, EventKind, Request};

/// Events a subscriber may have waiting before more are dropped for it.
pub const EVENT_QUEUE: usize = 1024;

/// The subscribed connections.
#[derive(Debug, Default)]
pub struct Events {
    subscribers: Vec<Sender<Event>>,
}

impl Events {
    /// A new subscription.
    pub fn subscribe(&mut self) -> Receiver<Event> {
        let (tx, rx) = crossbeam_channel::bounded(EVENT_QUEUE);
        self.subscribers.push(tx);
        rx
    }

    /// Logs `event` and hands it to every subscriber.
    pub fn publish(&mut self, event: Event) {
        tracing::info!(
            kind = ?event.kind,
            object = %event.object,
            detail = event.detail.as_deref().unwrap_or(""),
            user = ?event.user,
            "event"
        );
        self.subscribers.retain(|tx| {
            !matches!(
                tx.try_send(event.clone()),
                Err(TrySendError::Disconnected(_))
            )
        });
    }
}

/// The event a successful `request` made, if it changed anything.
pub fn of_request(request: &Request) -> Option<(EventKind, String)> {
    let event = match request {
        Request::NetCreate(spec) => (EventKind::NetworkAdded, spec.name.clone()),
        Request::NetRm { name } => (EventKind::NetworkRemoved, name.clone()),
        Request::NetConnect { a, b } => (EventKind::NetworksConnected, format!("{a} {b}")),
        Request::NetDisconnect { a, b } => (EventKind::NetworksDisconnected, format!("{a} {b}")),
        Request::PortAdd(spec) => (EventKind::PortAdded, spec.name.clone()),
        Request::PortRm { name } => (EventKind::PortRemoved, name.clone()),
        Request::UplinkAdd(spec) => (EventKind::UplinkAdded, spec.name.clone()),
        Request::UplinkRm { name } => (EventKind::UplinkRemoved, name.clone()),
        Request::PublishAdd(spec) => (EventKind::PublishAdded, spec.to_string()),
        Request::PublishRm(spec) => (EventKind::PublishRemoved, spec.to_string()),
        Request::LinkAdd(spec) => (EventKind::LinkAdded, format!("{} {}", spec.a, spec.b)),
        Request::LinkRm { a, b } => (EventKind::LinkRemoved, format!("{a} {b}")),
        Request::RuleAdd { rule, .. } => (EventKind::RuleAdded, format!("{} {rule}", rule.net)),
        Request::RuleRm { net, position } => {
            (EventKind::RuleRemoved, format!("{net} rule {position}"))
        }
        _ => return None,
    };
    Some(event)
}

/// An event of now.
pub fn event(kind: EventKind, object: String, detail: Option<String>, user: Option<u32>) -> Event {
    Event {
        time: rfc3339(SystemTime::now()),
        kind,
        object,
        detail,
        user,
    }
}

/// `t` as `YYYY-MM-DDThh:mm:ssZ`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (the days-to-civil
/// conversion over 400-year eras of 146,097 days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1
    let mp = (5 * doy + 2) / 153; // March-based month 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_utc_rfc3339() {
        let at = |secs| rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_796_342_400 + 3_723), "2026-12-04T01:02:03Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn subscribers_get_events_in_order_and_gone_ones_are_forgotten() {
        let mut events = Events::default();
        let first = events.subscribe();
        let second = events.subscribe();
        drop(second);
        for name in ["a", "b"] {
            events.publish(event(EventKind::PortAdded, name.into(), None, Some(0)));
        }
        assert_eq!(events.subscribers.len(), 1);
        let got: Vec<String> = first.try_iter().map(|e| e.object).collect();
        assert_eq!(got, ["a", "b"]);
    }
}
