//! Progress: bars on a terminal (bytes, rate, ETA, parts in flight, retries), plain log lines
//! otherwise, both on standard error so that standard output stays for results.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use upload_core::{Event, Observer};

/// How progress is shown.
#[derive(Clone)]
pub(crate) struct Ui {
    bars: Option<MultiProgress>,
}

impl Ui {
    /// Bars when standard error is a terminal, log lines otherwise.
    pub(crate) fn new() -> Self {
        let bars =
            std::io::stderr().is_terminal().then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self { bars }
    }

    /// Prints a line without breaking the bars, its control characters escaped.
    pub(crate) fn line(&self, text: &str) {
        let text = crate::term::message(text);
        match &self.bars {
            Some(m) => {
                let _ = m.println(text.as_ref());
            }
            None => eprintln!("{text}"),
        }
    }

    /// The observer of one upload, labelled `label`.
    pub(crate) fn observer(&self, label: &str, total: u64) -> (Observer, Tracker) {
        let tracker = Tracker::default();
        let bar = self.bars.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new(total));
            let style = ProgressStyle::with_template(
                "{prefix:>9} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} ETA {eta:>4} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_owned());
            bar
        });
        let t = tracker.clone();
        let label = label.to_owned();
        let last_line = Arc::new(Mutex::new(Instant::now()));
        let observer: Observer = Arc::new(move |event: &Event| {
            t.record(event);
            let msg = format!(
                "{} in flight, {} retries{}",
                t.in_flight.load(Ordering::Relaxed),
                t.retries.load(Ordering::Relaxed),
                if t.resumed_bytes.load(Ordering::Relaxed) > 0 { ", resumed" } else { "" }
            );
            if let Event::SessionMayExpire { remaining, estimated } = event {
                let text = format!(
                    "{label}: warning: the upload session ends in {}, and the rest is expected to take {}; if it ends first, the upload starts a new session from the first byte (a faster link, or more parallel parts where the vendor allows them, avoids it)",
                    span(*remaining),
                    span(*estimated)
                );
                match &bar {
                    Some(bar) => bar.println(&text),
                    None => eprintln!("{text}"),
                }
            }
            match &bar {
                Some(bar) => {
                    if let Event::SessionCreated { total_len: Some(len), .. } = event {
                        bar.set_length(*len);
                    }
                    bar.set_position(t.bytes_done.load(Ordering::Relaxed));
                    bar.set_message(msg);
                    if matches!(event, Event::Completed { .. }) {
                        bar.finish();
                    }
                }
                None => {
                    // A line per event that matters, and progress at most every two seconds.
                    let text = match event {
                        Event::SessionCreated { part_size, parts, .. } => {
                            Some(format!("{label}: session created, parts of {part_size} bytes, {parts:?} parts"))
                        }
                        Event::Resumed { parts_on_server, parts_missing, .. } => Some(format!(
                            "{label}: resumed, {parts_on_server} parts on the server{}",
                            if *parts_missing > 0 {
                                format!(", {parts_missing} recorded here but missing there")
                            } else {
                                String::new()
                            }
                        )),
                        Event::PartRetrying { number, delay, error, .. } => {
                            Some(format!("{label}: part {number} retried in {delay:?}: {error}"))
                        }
                        Event::SessionRestarted { reason } => Some(format!("{label}: new session: {reason}")),
                        Event::Completed { total_len } => Some(format!("{label}: completed, {total_len} bytes")),
                        Event::PartDone { bytes_done, .. } => {
                            let mut last = last_line.lock().unwrap_or_else(|e| e.into_inner());
                            (last.elapsed() >= Duration::from_secs(2)).then(|| {
                                *last = Instant::now();
                                format!("{label}: {bytes_done} bytes stored ({msg})")
                            })
                        }
                        _ => None,
                    };
                    if let Some(text) = text {
                        // Errors and reasons are the server's words.
                        eprintln!("{}", crate::term::message(&text));
                    }
                }
            }
        });
        (observer, tracker)
    }
}

/// A duration as hours, minutes and seconds (`2 h 05 min`, `7 min 30 s`, `12 s`).
fn span(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec} s"),
        (0, min, sec) => format!("{min} min {sec:02} s"),
        (h, min, _) => format!("{h} h {min:02} min"),
    }
}

/// Counts of one upload, shared with its observer.
#[derive(Clone, Default)]
pub(crate) struct Tracker {
    pub(crate) bytes_done: Arc<AtomicU64>,
    pub(crate) in_flight: Arc<AtomicU64>,
    pub(crate) retries: Arc<AtomicU64>,
    pub(crate) parts_done: Arc<AtomicU64>,
    pub(crate) resumed_bytes: Arc<AtomicU64>,
    pub(crate) resumed_parts: Arc<AtomicU64>,
}

impl Tracker {
    fn record(&self, event: &Event) {
        match event {
            Event::PartStarted { .. } => {
                self.in_flight.fetch_add(1, Ordering::Relaxed);
            }
            Event::PartDone { bytes_done, parts_done, .. } => {
                let _ = self.in_flight.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                self.bytes_done.store(*bytes_done, Ordering::Relaxed);
                self.parts_done.store(u64::from(*parts_done), Ordering::Relaxed);
            }
            Event::PartRetrying { .. } => {
                // The attempt ended; the next one starts again.
                let _ = self.in_flight.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                self.retries.fetch_add(1, Ordering::Relaxed);
            }
            Event::Retrying { .. } => {
                self.retries.fetch_add(1, Ordering::Relaxed);
            }
            Event::Resumed { bytes_on_server, parts_on_server, .. } => {
                self.resumed_parts.store(u64::from(*parts_on_server), Ordering::Relaxed);
                self.resumed_bytes.store(*bytes_on_server, Ordering::Relaxed);
                self.bytes_done.store(*bytes_on_server, Ordering::Relaxed);
            }
            Event::StepPaused { bytes_done, .. } => {
                self.in_flight.store(0, Ordering::Relaxed);
                self.bytes_done.store(*bytes_done, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_hours_minutes_and_seconds() {
        assert_eq!(span(Duration::from_secs(12)), "12 s");
        assert_eq!(span(Duration::from_secs(450)), "7 min 30 s");
        assert_eq!(span(Duration::from_secs(7500)), "2 h 05 min");
    }
}
