//! How a watch shows progress: progress bars on a terminal, or one plain line per change (no escape codes) when
//! stdout is a pipe or a file, so scripts and CI logs stay readable.

use std::io::Write;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::view::{ChangeTracker, GroupStatus, LineKey, ViewLine, format_stamp, watch_line};

/// Where a watch's progress goes.
pub enum Display<'a> {
    /// Changed lines, each prefixed with the time since the watch started.
    Lines {
        out: &'a mut dyn Write,
        trackers: Vec<ChangeTracker>,
    },
    /// One block of bars per group, redrawn in place.
    Bars(Bars),
}

impl<'a> Display<'a> {
    pub fn lines(out: &'a mut dyn Write, groups: usize) -> Display<'a> {
        Display::Lines {
            out,
            trackers: (0..groups).map(|_| ChangeTracker::default()).collect(),
        }
    }

    pub fn bars(names: &[String]) -> Display<'a> {
        Display::Bars(Bars::new(names))
    }

    /// Shows a fresh status of group `index`.
    pub fn status(&mut self, index: usize, name: &str, status: &GroupStatus, elapsed: Duration) {
        match self {
            Display::Lines { out, trackers } => {
                if let Some(tracker) = trackers.get_mut(index) {
                    print_changes(&mut **out, tracker, name, status.lines(), elapsed);
                }
            }
            Display::Bars(bars) => bars.update(index, status),
        }
    }

    /// Shows why group `index` got no answer this time (the watch goes on).
    pub fn problem(
        &mut self,
        index: usize,
        name: &str,
        last: Option<&GroupStatus>,
        problem: &str,
        elapsed: Duration,
    ) {
        match self {
            Display::Lines { out, trackers } => {
                if let Some(tracker) = trackers.get_mut(index) {
                    let mut lines = last.map(GroupStatus::lines).unwrap_or_default();
                    lines.push(ViewLine {
                        key: LineKey::Problem,
                        text: format!("{problem} (retrying)"),
                    });
                    print_changes(&mut **out, tracker, name, lines, elapsed);
                }
            }
            Display::Bars(bars) => bars.problem(index, problem),
        }
    }

    /// Leaves the bars on screen as they last were; lines need nothing.
    pub fn finish(&mut self) {
        if let Display::Bars(bars) = self {
            bars.finish();
        }
    }
}

fn print_changes(
    out: &mut dyn Write,
    tracker: &mut ChangeTracker,
    name: &str,
    lines: Vec<ViewLine>,
    elapsed: Duration,
) {
    let stamp = format_stamp(elapsed);
    for line in tracker.changes(lines) {
        let _ = writeln!(out, "{}", watch_line(&stamp, name, &line));
    }
    let _ = out.flush();
}

const HEADER_TEMPLATE: &str = "{spinner} {prefix}: {msg} [{elapsed}]";
const ROW_TEMPLATE: &str = "  {prefix} [{bar:24.green/red}] {msg}";
const BAR_CHARS: &str = "=> ";

fn style(template: &str) -> ProgressStyle {
    // The templates are constants; the fallback only guards against a future indicatif refusing one.
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars(BAR_CHARS)
}

/// The bars of one group: a spinner line with the state, a bar per app and cluster (ready out of total), and
/// a total bar kept last. Row and total bars are made on the first answer, each set up fully before it is
/// shown, so no half-set bar (an empty length draws as full) ever flashes on screen.
struct GroupBars {
    header: ProgressBar,
    rows: Vec<(LineKey, ProgressBar)>,
    total: Option<ProgressBar>,
}

/// Progress bars drawn on stdout.
pub struct Bars {
    multi: MultiProgress,
    groups: Vec<GroupBars>,
}

/// What one bar shows.
struct BarState {
    prefix: String,
    ready: usize,
    total: usize,
    message: String,
}

impl BarState {
    /// Nothing to count draws as an empty bar rather than indicatif's full one.
    fn length_and_position(&self) -> (u64, u64) {
        if self.total == 0 {
            (1, 0)
        } else {
            (self.total as u64, self.ready as u64)
        }
    }

    fn new_bar(&self) -> ProgressBar {
        let (length, position) = self.length_and_position();
        ProgressBar::new(length)
            .with_style(style(ROW_TEMPLATE))
            .with_prefix(self.prefix.clone())
            .with_position(position)
            .with_message(self.message.clone())
    }

    fn apply(&self, bar: &ProgressBar) {
        let (length, position) = self.length_and_position();
        bar.set_prefix(self.prefix.clone());
        bar.set_message(self.message.clone());
        bar.update(|state| {
            state.set_len(length);
            state.set_pos(position);
        });
    }
}

impl Bars {
    fn new(names: &[String]) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let groups = names
            .iter()
            .map(|name| {
                let header = multi.add(
                    ProgressBar::new_spinner()
                        .with_style(style(HEADER_TEMPLATE))
                        .with_prefix(name.clone())
                        .with_message("asking the hub"),
                );
                header.enable_steady_tick(Duration::from_millis(120));
                GroupBars {
                    header,
                    rows: Vec::new(),
                    total: None,
                }
            })
            .collect();
        Bars { multi, groups }
    }

    fn update(&mut self, index: usize, status: &GroupStatus) {
        let Some(group) = self.groups.get_mut(index) else {
            return;
        };
        group.header.set_message(status.state_text());
        let width = status
            .clusters
            .iter()
            .map(|row| row.title().chars().count())
            .max()
            .unwrap_or(0)
            .max("total".len());
        let mut seen = Vec::new();
        for row in &status.clusters {
            let key = LineKey::Cluster {
                app: row.app.clone(),
                cluster: row.qualified_name(),
            };
            let state = BarState {
                prefix: format!("{:<width$}", row.title()),
                ready: row.ready(),
                total: row.ready_total(),
                message: row.summary(),
            };
            match group.rows.iter().find(|(k, _)| *k == key) {
                Some((_, bar)) => state.apply(bar),
                None => {
                    let bar = match &group.total {
                        Some(total) => self.multi.insert_before(total, state.new_bar()),
                        None => {
                            let after = group.rows.last().map_or(&group.header, |(_, bar)| bar);
                            self.multi.insert_after(after, state.new_bar())
                        }
                    };
                    group.rows.push((key.clone(), bar));
                }
            }
            seen.push(key);
        }
        group.rows.retain(|(key, bar)| {
            let keep = seen.contains(key);
            if !keep {
                self.multi.remove(bar);
            }
            keep
        });
        let total_text = status.total_text();
        let state = BarState {
            prefix: format!("{:<width$}", "total"),
            ready: status.ready(),
            total: status.ready_total(),
            message: total_text
                .strip_prefix("total: ")
                .unwrap_or(&total_text)
                .to_owned(),
        };
        match &group.total {
            Some(total) => state.apply(total),
            None => {
                let after = group.rows.last().map_or(&group.header, |(_, bar)| bar);
                group.total = Some(self.multi.insert_after(after, state.new_bar()));
            }
        }
    }

    fn problem(&mut self, index: usize, problem: &str) {
        if let Some(group) = self.groups.get(index) {
            group.header.set_message(format!("{problem} (retrying)"));
        }
    }

    /// `abandon`, not `finish`: finishing would fill every bar to its length, showing not-ready rows as done.
    fn finish(&mut self) {
        for group in &self.groups {
            group.header.abandon();
            for (_, bar) in &group.rows {
                bar.abandon();
            }
            if let Some(total) = &group.total {
                total.abandon();
            }
        }
    }
}
