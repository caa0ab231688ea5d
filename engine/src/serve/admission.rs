//! Which computers are pulling from this server, so that at most a few do at once. In a room
//! where every machine shares what it installed, a computer turned away pulls a moment later
//! from one that has finished: the number of sources doubles with each round instead of
//! every machine sharing one link until all finish together.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A computer that asked for nothing for this long has finished (or given up) its pull.
pub const PULL_IDLE: Duration = Duration::from_millis(1500);

/// Computers pulling now, by address, with the time of their last request.
#[derive(Debug)]
pub struct Admission {
    max: Option<usize>,
    pulling: Mutex<HashMap<IpAddr, Instant>>,
}

impl Admission {
    /// At most `max` computers pulling at once; None admits everyone.
    pub fn new(max: Option<usize>) -> Self {
        Self {
            max,
            pulling: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `client` may start a pull now (it asked for `config` or the summary). An
    /// admitted computer holds its place until it has been idle for [`PULL_IDLE`].
    pub fn start(&self, client: IpAddr, now: Instant) -> bool {
        let Some(max) = self.max else {
            return true;
        };
        let Ok(mut pulling) = self.pulling.lock() else {
            return true;
        };
        pulling.retain(|_, last| now.saturating_duration_since(*last) < PULL_IDLE);
        if pulling.contains_key(&client) || pulling.len() < max {
            pulling.insert(client, now);
            return true;
        }
        false
    }

    /// Notes a request of a pull under way (an object or a delta part). Only an admitted
    /// computer's requests count, so the table never holds more than `max` addresses
    /// whatever peers send.
    pub fn touch(&self, client: IpAddr, now: Instant) {
        if self.max.is_none() {
            return;
        }
        if let Ok(mut pulling) = self.pulling.lock() {
            if let Some(last) = pulling.get_mut(&client) {
                *last = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn machine(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    #[test]
    fn one_computer_at_a_time_until_the_first_goes_quiet() {
        let admission = Admission::new(Some(1));
        let start = Instant::now();
        assert!(admission.start(machine(2), start));
        assert!(!admission.start(machine(3), start));
        // Still pulling: its requests keep its place, and it may ask for the summary again.
        admission.touch(machine(2), start + PULL_IDLE);
        assert!(admission.start(machine(2), start + PULL_IDLE));
        assert!(!admission.start(machine(3), start + PULL_IDLE + Duration::from_secs(1)));
        // Quiet for PULL_IDLE: the next one is let in, and the first must wait its turn.
        let later = start + 3 * PULL_IDLE;
        assert!(admission.start(machine(3), later));
        assert!(!admission.start(machine(2), later));
    }

    #[test]
    fn requests_of_computers_never_admitted_take_no_place() {
        let admission = Admission::new(Some(1));
        let now = Instant::now();
        for n in 1..=200 {
            admission.touch(machine(n), now);
        }
        assert!(admission.start(machine(201), now));
        let held = admission.pulling.lock().map(|p| p.len()).unwrap_or(0);
        assert_eq!(held, 1);
    }

    #[test]
    fn without_a_limit_everyone_is_let_in() {
        let admission = Admission::new(None);
        let now = Instant::now();
        assert!((1..=40).all(|n| admission.start(machine(n), now)));
    }
}
