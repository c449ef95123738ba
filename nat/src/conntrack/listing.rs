//! Listing the table a page at a time.
//!
//! Contract: [`Conntrack::page`] returns at most `limit` live entries that
//! match a [`Filter`], in the order of their [`Position`] (zone, then the
//! original tuple), starting after a given position. Asking again with the
//! returned `next` continues where the page ended, so a listing of a full
//! table (262,144 entries) is a series of bounded answers instead of one
//! answer too large to send. Each entry is listed at most once per walk;
//! connections made or ended between pages may or may not appear (as with a
//! netlink dump of the kernel's table). A page costs one pass over the table
//! and a partial sort of what is left: a control operation, never run per
//! packet.

use super::{Conntrack, Entry, Filter, Zone};
use crate::flow::FlowKey;

/// Where an entry sits in the listing order: its zone, then its original
/// tuple. Unique per entry: original tuples never clash within a zone.
pub type Position = (Zone, FlowKey);

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page {
    /// The entries, in listing order.
    pub entries: Vec<Entry>,
    /// The position to continue after; `None` when nothing is left.
    pub next: Option<Position>,
}

/// The listing position of `e`.
pub fn position(e: &Entry) -> Position {
    (e.zone, e.original)
}

impl Conntrack {
    /// Up to `limit` (at least one) live entries that `filter` selects,
    /// after `after` in listing order.
    pub fn page(&self, filter: &Filter, after: Option<Position>, limit: usize, now: u64) -> Page {
        let limit = limit.max(1);
        let mut rest: Vec<&Entry> = self
            .iter(now)
            .map(|(_, e)| e)
            .filter(|e| filter.matches(e) && after.is_none_or(|a| position(e) > a))
            .collect();
        let more = rest.len() > limit;
        if more {
            rest.select_nth_unstable_by_key(limit, |e| position(e));
            rest.truncate(limit);
        }
        rest.sort_unstable_by_key(|e| position(e));
        let next = if more {
            rest.last().map(|e| position(e))
        } else {
            None
        };
        Page {
            entries: rest.into_iter().cloned().collect(),
            next,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::conntrack::{Config, NewConn, Packet};
    use crate::flow::Proto;
    use crate::mapping::Mapping;

    const NOW: u64 = 1_000;

    /// A table with `per_zone` UDP connections in each of zones 1 and 0,
    /// inserted in an order unrelated to the listing order.
    fn table(per_zone: u16) -> Conntrack {
        let mut t = Conntrack::with_mapping(Config::default(), Mapping::with_seed(7));
        for zone in [1, 0] {
            for i in (0..per_zone).rev() {
                let original = FlowKey {
                    proto: Proto::Udp,
                    src: Ipv4Addr::new(10, 0, 0, 2 + (i % 3) as u8),
                    sport: 40_000 + i,
                    dst: Ipv4Addr::new(10, 9, 0, 1),
                    dport: 53,
                };
                let conn = NewConn {
                    zone,
                    ..NewConn::new(original)
                };
                t.insert(conn, &Packet::other(60), NOW).unwrap();
            }
        }
        t
    }

    fn walk(t: &Conntrack, filter: &Filter, limit: usize) -> (Vec<Position>, usize) {
        let (mut seen, mut pages, mut after) = (Vec::new(), 0, None);
        loop {
            let page = t.page(filter, after, limit, NOW);
            assert!(page.entries.len() <= limit, "a page holds at most {limit}");
            seen.extend(page.entries.iter().map(position));
            pages += 1;
            match page.next {
                Some(next) => after = Some(next),
                None => return (seen, pages),
            }
        }
    }

    #[test]
    fn pages_list_every_entry_once_in_order() {
        let t = table(25);
        let (seen, pages) = walk(&t, &Filter::default(), 10);
        assert_eq!(seen.len(), 50);
        assert_eq!(pages, 5);
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
        assert!(seen[..25].iter().all(|p| p.0 == 0) && seen[25..].iter().all(|p| p.0 == 1));
    }

    #[test]
    fn an_exact_fit_ends_without_an_empty_page() {
        let t = table(5);
        let page = t.page(&Filter::default(), None, 10, NOW);
        assert_eq!((page.entries.len(), page.next), (10, None));
    }

    #[test]
    fn the_filter_is_applied_before_paging() {
        let t = table(25);
        let filter = Filter {
            addr: Some(Ipv4Addr::new(10, 0, 0, 2)),
            zone: Some(1),
            ..Filter::default()
        };
        let (seen, _) = walk(&t, &filter, 4);
        // Ports 40000 + i with i % 3 == 0: i = 0, 3, …, 24.
        assert_eq!(seen.len(), 9);
        assert!(seen
            .iter()
            .all(|(zone, k)| *zone == 1 && k.src == filter.addr.unwrap()));
    }

    #[test]
    fn a_connection_gone_between_pages_does_not_derail_the_walk() {
        let mut t = table(10);
        let first = t.page(&Filter::default(), None, 5, NOW);
        let gone = position(&first.entries[4]);
        let handle = t
            .iter(NOW)
            .find(|(_, e)| position(e) == gone)
            .map(|(h, _)| h)
            .unwrap();
        assert!(t.remove(handle));
        let (mut rest, mut after) = (Vec::new(), first.next);
        while let Some(a) = after {
            let page = t.page(&Filter::default(), Some(a), 5, NOW);
            rest.extend(page.entries.iter().map(position));
            after = page.next;
        }
        assert_eq!(rest.len(), 15, "the other 15 connections still follow");
        assert!(rest.iter().all(|p| *p > gone));
    }
}
