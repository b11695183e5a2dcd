//! Progress of a long run on stderr: on a terminal, one line rewritten in place (with a bar when the total is
//! known); otherwise (a log file, CI, a pipe) a plain line at most every [`PLAIN_EVERY`], and always the last one,
//! so a log holds a readable trail and not thousands of carriage returns.

use std::io::{IsTerminal as _, Write};
use std::time::{Duration, Instant};

/// Without a terminal, a progress line at most this often.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);
/// The bar's width in characters.
pub const BAR_WIDTH: usize = 24;

/// A bar for `done` of `total`: `[#########---------------]  37%`. A total of zero shows a full bar.
pub fn bar(done: u64, total: u64) -> String {
    let pct = (done.min(total) * 100).checked_div(total).unwrap_or(100);
    let filled = usize::try_from(pct).unwrap_or(100) * BAR_WIDTH / 100;
    format!(
        "[{}{}] {pct:>3}%",
        "#".repeat(filled),
        "-".repeat(BAR_WIDTH - filled)
    )
}

/// One progress line on a writer (stderr in the command).
#[derive(Debug)]
pub struct ProgressLine<W: Write> {
    out: W,
    terminal: bool,
    every: Duration,
    last: Option<Instant>,
    open: bool,
}

impl ProgressLine<std::io::Stderr> {
    /// On stderr, rewritten in place when stderr is a terminal.
    pub fn stderr() -> Self {
        let terminal = std::io::stderr().is_terminal();
        Self::new(std::io::stderr(), terminal, PLAIN_EVERY)
    }
}

impl<W: Write> ProgressLine<W> {
    /// On `out`: rewritten in place when `terminal`, else a plain line at most every `every`.
    pub fn new(out: W, terminal: bool, every: Duration) -> Self {
        Self {
            out,
            terminal,
            every,
            last: None,
            open: false,
        }
    }

    /// Shows `line` now (a terminal), or when the last plain line is `every` old (not a terminal).
    pub fn update(&mut self, line: &str) {
        self.update_at(line, Instant::now());
    }

    /// [`Self::update`] at a given instant (the tests' clock).
    pub fn update_at(&mut self, line: &str, now: Instant) {
        // A progress line that cannot be written is not worth stopping a run for.
        if self.terminal {
            let _ = write!(self.out, "\r\x1b[2K{line}");
            let _ = self.out.flush();
            self.open = true;
        } else if self
            .last
            .is_none_or(|at| now.saturating_duration_since(at) >= self.every)
        {
            let _ = writeln!(self.out, "{line}");
            self.last = Some(now);
        }
    }

    /// Shows `line` whatever the time, and ends the line: what comes next starts on a line of its own.
    pub fn finish(&mut self, line: &str) {
        if self.terminal {
            let _ = writeln!(self.out, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(self.out, "{line}");
        }
        self.open = false;
    }

    /// Ends a line left open on a terminal (before an error message), showing nothing more.
    pub fn close(&mut self) {
        if self.open {
            let _ = writeln!(self.out);
            self.open = false;
        }
    }

    /// The writer (the tests read what was written).
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_the_share_done() {
        assert_eq!(bar(0, 10), format!("[{}]   0%", "-".repeat(BAR_WIDTH)));
        assert_eq!(
            bar(5, 10),
            format!("[{}{}]  50%", "#".repeat(12), "-".repeat(12))
        );
        assert_eq!(bar(10, 10), format!("[{}] 100%", "#".repeat(BAR_WIDTH)));
        assert_eq!(bar(0, 0), format!("[{}] 100%", "#".repeat(BAR_WIDTH)));
        assert_eq!(bar(12, 10), bar(10, 10), "never past full");
    }

    #[test]
    fn without_a_terminal_lines_are_plain_and_periodic() {
        let mut p = ProgressLine::new(Vec::new(), false, Duration::from_secs(10));
        let t0 = Instant::now();
        p.update_at("one", t0);
        p.update_at("two", t0 + Duration::from_secs(3));
        p.update_at("three", t0 + Duration::from_secs(10));
        p.finish("done");
        let out = String::from_utf8(p.into_inner()).unwrap_or_default();
        assert_eq!(out, "one\nthree\ndone\n");
    }

    #[test]
    fn on_a_terminal_one_line_is_rewritten() {
        let mut p = ProgressLine::new(Vec::new(), true, Duration::from_secs(10));
        let t0 = Instant::now();
        p.update_at("one", t0);
        p.update_at("two", t0);
        p.close();
        p.close();
        let out = String::from_utf8(p.into_inner()).unwrap_or_default();
        assert_eq!(out, "\r\x1b[2Kone\r\x1b[2Ktwo\n", "one newline, only once");
    }
}
