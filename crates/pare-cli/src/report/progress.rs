//! Progress on stderr: a bar with the step under way, elapsed time and an estimate of the rest, redrawn
//! in place on a terminal, one line per step otherwise.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Progress over steps of unequal, estimated cost.
pub struct Progress {
    start: Instant,
    total: f64,
    done: f64,
    tty: bool,
    steps: usize,
    step: usize,
}

fn clock(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

impl Progress {
    /// Progress over `steps` steps whose estimated costs add up to `total`.
    pub fn new(steps: usize, total: f64) -> Self {
        Progress {
            start: Instant::now(),
            total: total.max(1e-9),
            done: 0.0,
            tty: std::io::stderr().is_terminal(),
            steps,
            step: 0,
        }
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Starts a step: shows `what` with the bar.
    pub fn begin(&mut self, what: &str) {
        self.step += 1;
        let frac = (self.done / self.total).min(1.0);
        let el = self.elapsed();
        let eta = if self.done > 0.0 { el / self.done * (self.total - self.done) } else { f64::NAN };
        let filled = (frac * 24.0).round() as usize;
        let line = format!(
            "[{}{}] {:>3.0}% {}/{} {what} · {} elapsed{}",
            "#".repeat(filled),
            ".".repeat(24 - filled),
            100.0 * frac,
            self.step.min(self.steps),
            self.steps,
            clock(el),
            if eta.is_finite() { format!(" · ETA {}", clock(eta)) } else { String::new() }
        );
        let mut e = std::io::stderr().lock();
        if self.tty {
            let _ = write!(e, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(e, "{line}");
        }
        let _ = e.flush();
    }

    /// Ends the current step, whose estimated cost was `cost`.
    pub fn end(&mut self, cost: f64) {
        self.done += cost;
    }

    /// Clears the bar (on a terminal) before other output.
    pub fn finish(&self) {
        if self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}
