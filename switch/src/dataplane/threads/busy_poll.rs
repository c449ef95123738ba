//! Adaptive busy polling: how long a datapath thread keeps polling without
//! sleeping after a round that moved frames.
//!
//! Contract: [`BusyPoll`] learns from the gaps between a thread's busy
//! rounds — from the end of one to the wake-up that found the next work —
//! and keeps a window between zero and the ceiling `yardd --busy-poll-us`
//! gave. A gap within the window is a wake-up saved: the window stays. A
//! gap longer than the window but within the ceiling is a wake-up polling
//! would have saved: the window doubles (from [`FIRST_WINDOW`]), up to the
//! ceiling. A gap past the ceiling is a window polled for nothing: it
//! halves, and under [`FIRST_WINDOW`] it is zero. So a conversation whose
//! packets follow each other closely (a ping-pong, a TCP handshake, a
//! connection a client opens after another) is served without the wake-up
//! of a sleeping thread, while traffic that comes at longer intervals —
//! however many packets a second — soon costs no polling at all, and an
//! idle thread sleeps. This is what the kernel's `haltpoll` cpuidle
//! governor does for a guest's idle vCPU, for a switch's poll loop.
//!
//! Polling is only worth it while nobody else wants a CPU. When the
//! endpoints of a flood share the CPUs with the switch, each microsecond it
//! polls is one they wait for — on its CPU, or on the other one, where the
//! scheduler put them because the polling thread looked busy. So the
//! thread reports, at most every [`CONTENTION_PERIOD`], a [`Contention`]
//! reading: the machine's CPU pressure (the time some task waited for a
//! CPU, `sys::cpu_pressure`), or where the kernel has no pressure
//! information, how often the thread itself was preempted. A period
//! [`STALLED_PERCENT`] stalled, or preempted [`CONTENDED_PER_SECOND`]
//! times a second, stops polling until [`QUIET_PERIODS`] periods in a row
//! show less (a flood's stalls come in bursts, with quiet periods between
//! them). On the 2-vCPU lab machine, in 10 ms periods, a ping-pong or a
//! connection loop stalls 1.4–4.9 % of the time (10th to 90th percentile),
//! a TCP stream 18–45 %, four streams 6–47 %, a 64-byte flood 41–50 %.
//! Nothing here allocates or makes a system call.

use std::time::{Duration, Instant};

/// The window after the first gap that shows polling would have paid.
pub const FIRST_WINDOW: Duration = Duration::from_micros(10);

/// How often a thread that may poll checks whether it was preempted.
pub const CONTENTION_PERIOD: Duration = Duration::from_millis(10);

/// The share of a period, in percent, during which some task waited for
/// a CPU from which polling stops.
pub const STALLED_PERCENT: u32 = 10;

/// Preemptions a second from which polling stops, where the kernel has no
/// pressure information: others want the thread's CPU.
pub const CONTENDED_PER_SECOND: u64 = 500;

/// Quiet periods in a row before polling resumes.
pub const QUIET_PERIODS: u8 = 5;

/// A reading that tells whether others wait for a CPU, as the kernel
/// counts it from boot or from the thread's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contention {
    /// How long some task on the machine has waited for a CPU
    /// (`sys::cpu_pressure`).
    Stalled(Duration),
    /// How many times the thread has been preempted
    /// (`sys::thread_cpu::preemptions`).
    Preempted(u64),
}

impl Contention {
    /// Whether the change from `before` to `self` over `elapsed` shows a
    /// contended CPU; `false` for readings of two kinds.
    fn contended_since(self, before: Contention, elapsed: Duration) -> bool {
        match (before, self) {
            (Contention::Stalled(before), Contention::Stalled(now)) => {
                now.saturating_sub(before).as_micros() * 100
                    >= u128::from(STALLED_PERCENT) * elapsed.as_micros()
            }
            (Contention::Preempted(before), Contention::Preempted(now)) => {
                u128::from(now.saturating_sub(before)) * 1_000_000
                    >= u128::from(CONTENDED_PER_SECOND) * elapsed.as_micros()
            }
            _ => false,
        }
    }
}

/// One datapath thread's busy polling. See the module documentation.
#[derive(Debug, Clone)]
pub struct BusyPoll {
    /// The longest window (`yardd --busy-poll-us`); zero: never polls.
    ceiling: Duration,
    /// The window now.
    window: Duration,
    /// When the last round that moved frames ended.
    idle_since: Option<Instant>,
    /// The last contention reading, and when it was taken.
    reading: Option<(Contention, Instant)>,
    /// Quiet periods still needed before polling resumes (0: none).
    contended: u8,
}

impl BusyPoll {
    /// Busy polling for at most `ceiling` after a busy round (zero: off).
    pub fn new(ceiling: Duration) -> BusyPoll {
        BusyPoll {
            ceiling,
            window: Duration::ZERO,
            idle_since: None,
            reading: None,
            contended: 0,
        }
    }

    /// Whether the thread should report a [`Contention`] reading at `now`
    /// ([`contention`](Self::contention)): polling is on and the last
    /// report is a [`CONTENTION_PERIOD`] old.
    pub fn contention_due(&self, now: Instant) -> bool {
        !self.ceiling.is_zero()
            && self
                .reading
                .is_none_or(|(_, at)| now.saturating_duration_since(at) >= CONTENTION_PERIOD)
    }

    /// A contention reading taken at `now`: polling stops when the period
    /// since the last one was contended, until [`QUIET_PERIODS`] periods
    /// in a row were not.
    pub fn contention(&mut self, reading: Contention, now: Instant) {
        if let Some((before, at)) = self.reading {
            self.contended = if reading.contended_since(before, now.saturating_duration_since(at)) {
                QUIET_PERIODS
            } else {
                self.contended.saturating_sub(1)
            };
        }
        self.reading = Some((reading, now));
    }

    /// The window the next idle time is polled for.
    #[cfg(test)]
    pub fn window(&self) -> Duration {
        self.window
    }

    /// A round that moved frames, begun at `woke` (when the poll that
    /// found its work returned), ended at `now`: learns from the gap
    /// before it.
    pub fn busy_round(&mut self, woke: Instant, now: Instant) {
        if let Some(since) = self.idle_since {
            self.learn(woke.saturating_duration_since(since));
        }
        self.idle_since = Some(now);
    }

    /// Whether the thread should poll rather than sleep at `now`.
    pub fn polling(&self, now: Instant) -> bool {
        self.contended == 0
            && !self.window.is_zero()
            && self
                .idle_since
                .is_some_and(|since| now.saturating_duration_since(since) < self.window)
    }

    /// Adapts the window to a gap of `gap` between two busy rounds.
    fn learn(&mut self, gap: Duration) {
        if gap <= self.window {
            return;
        }
        if gap <= self.ceiling {
            self.window = (self.window * 2).max(FIRST_WINDOW).min(self.ceiling);
        } else {
            self.window /= 2;
            if self.window < FIRST_WINDOW {
                self.window = Duration::ZERO;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CEILING: Duration = Duration::from_micros(50);

    /// Busy rounds of `work` each, `gap` apart, `n` of them, from `start`;
    /// returns when the last ended.
    fn rounds(poll: &mut BusyPoll, start: Instant, gap: Duration, n: usize) -> Instant {
        let work = Duration::from_micros(5);
        let mut now = start;
        for _ in 0..n {
            let woke = now + gap;
            now = woke + work;
            poll.busy_round(woke, now);
        }
        now
    }

    #[test]
    fn a_conversation_with_short_gaps_grows_the_window_to_cover_them() {
        let mut poll = BusyPoll::new(CEILING);
        let end = rounds(&mut poll, Instant::now(), Duration::from_micros(30), 6);
        // 10, 20, then 40 us: the gap is covered, the window stays.
        assert_eq!(poll.window(), Duration::from_micros(40));
        assert!(poll.polling(end + Duration::from_micros(30)));
        assert!(!poll.polling(end + Duration::from_micros(40)));
        // Longer gaps, still under the ceiling: up to the ceiling, no more.
        rounds(&mut poll, end, Duration::from_micros(45), 3);
        assert_eq!(poll.window(), CEILING);
    }

    #[test]
    fn traffic_at_intervals_longer_than_the_ceiling_stops_polling() {
        let mut poll = BusyPoll::new(CEILING);
        let end = rounds(&mut poll, Instant::now(), Duration::from_micros(45), 6);
        assert_eq!(poll.window(), CEILING);
        // Then a packet every 120 us, 8000 a second: each window would be
        // polled in vain.
        let end = rounds(&mut poll, end, Duration::from_micros(120), 3);
        assert_eq!(poll.window(), Duration::ZERO);
        assert!(!poll.polling(end));
        rounds(&mut poll, end, Duration::from_micros(120), 100);
        assert_eq!(poll.window(), Duration::ZERO, "no polling comes back");
    }

    #[test]
    fn gaps_the_window_covers_keep_it_and_one_long_pause_halves_it() {
        let mut poll = BusyPoll::new(CEILING);
        let end = rounds(&mut poll, Instant::now(), Duration::from_micros(45), 6);
        let end = rounds(&mut poll, end, Duration::from_micros(3), 50);
        assert_eq!(poll.window(), CEILING, "covered gaps keep the window");
        let end = rounds(&mut poll, end, Duration::from_secs(2), 1);
        assert_eq!(poll.window(), CEILING / 2);
        rounds(&mut poll, end, Duration::from_micros(45), 1);
        assert_eq!(poll.window(), CEILING, "back at once");
    }

    #[test]
    fn a_preempted_thread_stops_polling_until_it_is_left_alone() {
        let mut poll = BusyPoll::new(CEILING);
        let start = Instant::now();
        let end = rounds(&mut poll, start, Duration::from_micros(30), 6);
        assert!(poll.polling(end));
        assert!(poll.contention_due(end), "the first report is due at once");
        poll.contention(Contention::Preempted(1000), end);
        // 10 ms later, 20 more preemptions: 2000 a second.
        let later = end + CONTENTION_PERIOD;
        assert!(poll.contention_due(later));
        poll.contention(Contention::Preempted(1020), later);
        assert!(!poll.polling(later), "a contended CPU is not polled");
        let later = rounds(&mut poll, later, Duration::from_micros(30), 1);
        assert!(!poll.polling(later), "busy rounds do not bring it back");
        assert!(!poll.contention_due(later), "not before a period passed");
        // Then 2 preemptions every 10 ms, 200 a second.
        let mut quiet = later;
        let mut count = 1020;
        for period in 1..=QUIET_PERIODS {
            assert!(
                !poll.polling(quiet),
                "still contended before period {period}"
            );
            quiet += CONTENTION_PERIOD;
            count += 2;
            poll.contention(Contention::Preempted(count), quiet);
        }
        let quiet = rounds(&mut poll, quiet, Duration::from_micros(30), 1);
        assert!(poll.polling(quiet), "polling again, with the window it had");
    }

    #[test]
    fn a_machine_whose_tasks_wait_for_a_cpu_is_not_polled_for() {
        let mut poll = BusyPoll::new(CEILING);
        let start = Instant::now();
        let end = rounds(&mut poll, start, Duration::from_micros(30), 6);
        let ms = Duration::from_millis;
        poll.contention(Contention::Stalled(ms(5000)), end);
        // Some task waited 3 of the next 10 ms (a flood's endpoints, on
        // this CPU or another): 30 %.
        let later = end + CONTENTION_PERIOD;
        poll.contention(Contention::Stalled(ms(5003)), later);
        let later = rounds(&mut poll, later, Duration::from_micros(30), 1);
        assert!(!poll.polling(later));
        // Then 0.2 ms in every 10 (2 %, a ping-pong's own wake-ups).
        let mut quiet = later;
        let mut stalled = ms(5003);
        for _ in 0..QUIET_PERIODS {
            quiet += CONTENTION_PERIOD;
            stalled += Duration::from_micros(200);
            poll.contention(Contention::Stalled(stalled), quiet);
        }
        let quiet = rounds(&mut poll, quiet, Duration::from_micros(30), 1);
        assert!(poll.polling(quiet));
    }

    #[test]
    fn a_few_preemptions_over_a_long_idle_time_are_not_contention() {
        let mut poll = BusyPoll::new(CEILING);
        let start = Instant::now();
        poll.contention(Contention::Preempted(0), start);
        // Asleep for two seconds, preempted 50 times meanwhile: 25 a second.
        let woke = start + Duration::from_secs(2);
        poll.contention(Contention::Preempted(50), woke);
        let end = rounds(&mut poll, woke, Duration::from_micros(30), 6);
        assert!(poll.polling(end));
    }

    #[test]
    fn a_zero_ceiling_never_polls() {
        let mut poll = BusyPoll::new(Duration::ZERO);
        let end = rounds(&mut poll, Instant::now(), Duration::from_micros(1), 100);
        assert_eq!(poll.window(), Duration::ZERO);
        assert!(!poll.polling(end));
        assert!(!poll.contention_due(end), "no system call for nothing");
    }

    #[test]
    fn nothing_is_polled_before_the_first_busy_round() {
        let poll = BusyPoll::new(CEILING);
        assert!(!poll.polling(Instant::now()));
    }
}
