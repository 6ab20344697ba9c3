//! `gotrace top`: a live terminal view of a session, like `py-spy top`. Three views — heap
//! allocation sites, `go` statements, findings — redrawn every tick from the session's heap
//! snapshot (what the model already holds: nothing more is read from the target) and on every
//! key. Plain ANSI through crossterm, so it works over ssh; the terminal is given back on every
//! way out, a panic included.

use std::{
    cell::RefCell,
    collections::{HashMap, VecDeque},
    future::Future,
    hash::Hash,
    io::{Stdout, Write},
};

use crossterm::{
    event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
    execute,
    terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen},
};
use futures_util::StreamExt;
use ratatui::{
    backend::CrosstermBackend,
    layout::{Constraint, Layout, Rect},
    style::{Modifier, Style},
    text::{Line, Span},
    widgets::{Cell, Paragraph, Row, Table, Wrap},
    Frame, Terminal,
};
use tokio::sync::Notify;

use crate::{
    detect::Finding,
    error::{Error, Result},
    session::{Session, Summary},
    snapshot::{Report, StopReason},
    symbols::Frame as Site,
    units::human_bytes,
};

/// How a `top` session ended, and when (the last picture may have stayed up longer).
#[derive(Clone, Copy, Debug)]
pub struct Ended {
    pub reason: StopReason,
    pub after: std::time::Duration,
}

/// Runs `session` under the live view until `q`, Ctrl-C, `stop` (the caller's signals) or the
/// target's end; then the terminal is given back and the session is over (sampler restored)
/// as after `Session::run`. When the target exits, its last picture stays up until `q`.
pub async fn run(session: &mut Session, stop: impl Future<Output = ()>) -> Result<Ended> {
    let mut ui = Ui {
        top: Top::new(title(session)),
        screen: Screen::enter().map_err(terminal_error)?,
        failed: None,
    };
    if let Ok(s) = session.heap_snapshot() {
        ui.top.update(&s.report, None);
    }
    ui.draw();
    let ui = RefCell::new(ui);
    let mut events = EventStream::new();
    let failed = Notify::new();
    tokio::pin!(stop);
    let reason = session
        .run(
            async {
                tokio::select! {
                    _ = keys(&ui, &mut events) => {}
                    _ = &mut stop => {}
                    _ = failed.notified() => {}
                }
                ui.borrow_mut().stopping();
            },
            |session, summary| {
                let mut ui = ui.borrow_mut();
                match session.heap_snapshot() {
                    Ok(s) => ui.top.update(&s.report, Some(summary)),
                    Err(e) => ui.top.status = Some(format!("snapshot failed: {e}")),
                }
                ui.draw();
                if ui.failed.is_some() {
                    failed.notify_one();
                }
            },
        )
        .await?;
    let after = session.elapsed();
    // The last picture stays up, to be read, until the user leaves.
    let ended = matches!(reason, StopReason::TargetExited | StopReason::TargetExeced);
    if ended && ui.borrow_mut().ended(reason) {
        tokio::select! {
            _ = keys(&ui, &mut events) => {}
            _ = &mut stop => {}
        }
    }
    let ui = ui.into_inner();
    drop(ui.screen);
    match ui.failed {
        Some(e) => Err(terminal_error(e)),
        None => Ok(Ended { reason, after }),
    }
}

fn terminal_error(e: std::io::Error) -> Error {
    Error::Other(format!("the terminal: {e}"))
}

/// Reads keys, redrawing after each, until one says quit (or input ends or fails).
async fn keys(ui: &RefCell<Ui>, events: &mut EventStream) {
    while let Some(event) = events.next().await {
        let mut ui = ui.borrow_mut();
        match event {
            Ok(Event::Key(key)) if key.kind == KeyEventKind::Press => {
                if ui.top.key(key) == Action::Quit {
                    return;
                }
            }
            Ok(Event::Resize(..)) => {}
            Ok(_) => continue,
            Err(e) => {
                ui.failed = Some(e);
                return;
            }
        }
        ui.draw();
        if ui.failed.is_some() {
            return;
        }
    }
}

/// The terminal in raw mode on the alternate screen, given back when dropped — and by the
/// panic hook, since a panic's message must land on the user's own screen.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> std::io::Result<Screen> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            leave();
            previous(info);
        }));
        enable_raw_mode()?;
        let mut stdout = std::io::stdout();
        if let Err(e) = execute!(stdout, EnterAlternateScreen) {
            leave();
            return Err(e);
        }
        let terminal = Terminal::new(CrosstermBackend::new(stdout)).inspect_err(|_| leave())?;
        Ok(Screen { terminal })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        leave();
    }
}

/// Every step attempted whatever fails before it: a terminal half given back is no better.
fn leave() {
    let _ = disable_raw_mode();
    let mut stdout = std::io::stdout();
    let _ = execute!(stdout, LeaveAlternateScreen, crossterm::cursor::Show);
    let _ = stdout.flush();
}

struct Ui {
    top: Top,
    screen: Screen,
    /// The terminal could not be drawn on or read (the ssh connection went away): the view
    /// stops, the session ends as for `q`.
    failed: Option<std::io::Error>,
}

impl Ui {
    /// Draws; a failure stops the view (and the session).
    fn draw(&mut self) {
        if let Err(e) = self.show() {
            self.failed.get_or_insert(e);
        }
    }

    fn show(&mut self) -> std::io::Result<()> {
        let top = &self.top;
        self.screen.terminal.draw(|f| top.render(f)).map(drop)
    }

    /// Best effort: the session is ending anyway (a hangup may have closed the terminal).
    fn stopping(&mut self) {
        self.top.status = Some("stopping: restoring the heap sampler…".into());
        let _ = self.show();
    }

    /// Whether the last picture, marked, could be shown (then it waits for `q`).
    fn ended(&mut self, reason: StopReason) -> bool {
        self.top.status = Some(match reason {
            StopReason::TargetExeced => "target exec'd another program — q to leave".into(),
            _ => "target exited — q to leave".into(),
        });
        self.failed.is_none() && self.show().is_ok()
    }
}

/// The views, in their keys' order (`as usize` indexes `ALL` and the per-view state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    Heap = 0,
    Go = 1,
    Findings = 2,
}

impl View {
    const ALL: [View; 3] = [View::Heap, View::Go, View::Findings];

    fn title(self) -> &'static str {
        match self {
            View::Heap => "heap sites",
            View::Go => "go statements",
            View::Findings => "findings",
        }
    }

    /// The columns rows can be sorted by (largest first), as headed in the table.
    fn sort_columns(self) -> &'static [&'static str] {
        match self {
            View::Heap => &HEAP_COLUMNS[..4],
            View::Go => &GO_COLUMNS[..4],
            View::Findings => &[],
        }
    }
}

const HEAP_COLUMNS: [&str; 5] = ["IN USE", "GROWTH/MIN", "ALLOC/S", "AGE (GC)", "SITE"];
const GO_COLUMNS: [&str; 6] = [
    "LIVE",
    "BLOCKED",
    "GROWTH/MIN",
    "OLDEST",
    "GO STATEMENT",
    "FUNCTION",
];
/// `GoroutineAges::seconds`' buckets.
const GO_AGES: [&str; 5] = ["<1s", "1-10s", "10s-1m", "1-10m", "10m+"];

#[derive(Debug, PartialEq, Eq)]
enum Action {
    Quit,
    Redraw,
}

/// One allocation site: the heap profile's values as of the last GC cycle, and their trend.
struct HeapRow {
    site: Site,
    inuse: u64,
    growth_per_min: Option<f64>,
    alloc_per_s: Option<f64>,
    oldest: Option<u32>,
}

/// One `go` statement's goroutines alive now.
struct GoRow {
    site: Site,
    function: String,
    live: u64,
    blocked: u64,
    growth_per_min: Option<f64>,
    /// The `GO_AGES` bucket of its oldest goroutine.
    oldest: Option<usize>,
}

/// What the view shows, kept between ticks so that keys redraw at once.
struct Top {
    view: View,
    /// Per view, the index of the column sorted by, and the first row (line) shown.
    sort: [usize; 3],
    scroll: [usize; 3],
    help: bool,
    title: String,
    summary: String,
    status: Option<String>,
    heap_note: Option<String>,
    heap: Vec<HeapRow>,
    go: Vec<GoRow>,
    findings: Vec<Finding>,
    inuse: Trends<Site>,
    allocated: Trends<Site>,
    live: Trends<Site>,
}

/// The first line: the program, and what gotrace did to its heap sampler.
fn title(session: &Session) -> String {
    let info = session.target().info();
    let sampler = match (
        session.sampler(),
        session.attachment().sampler().unavailable(),
    ) {
        (_, Some(why)) => format!("no heap profile: {why}"),
        (Some(s), None) if s.set_by_gotrace => format!(
            "heap sampler on: MemProfileRate {} → {} (restored on exit)",
            s.rate_at_attach, s.rate
        ),
        (Some(s), None) => format!("heap sampler: the program's MemProfileRate {}", s.rate),
        (None, None) => String::new(),
    };
    format!(
        "gotrace top │ pid {} {} │ {} │ {sampler}",
        info.pid, info.exe, info.go_version
    )
}

impl Top {
    fn new(title: String) -> Top {
        Top {
            view: View::Heap,
            sort: [0; 3],
            scroll: [0; 3],
            help: false,
            title,
            summary: String::new(),
            status: None,
            heap_note: None,
            heap: Vec::new(),
            go: Vec::new(),
            findings: Vec::new(),
            inuse: Trends::default(),
            allocated: Trends::default(),
            live: Trends::default(),
        }
    }

    /// Takes in the report of a tick (`summary` is `None` before the first).
    fn update(&mut self, report: &Report, summary: Option<&Summary>) {
        let t = report.session.duration_s;
        if let Some(s) = summary {
            self.summary = super::summary::format(s);
        }
        let heap = &report.heap;
        self.heap_note = if let Some(why) = &heap.unavailable {
            Some(format!("no heap profile: {why}"))
        } else if heap.top.is_empty() {
            Some("waiting for a GC cycle to publish the heap profile…".into())
        } else {
            None
        };
        let sites = heap.by_site();
        for s in &sites {
            self.inuse.record(&s.site, t, s.inuse_bytes as f64);
            self.allocated.record(&s.site, t, s.alloc_bytes as f64);
        }
        self.heap = sites
            .into_iter()
            .map(|s| HeapRow {
                growth_per_min: self.inuse.per_minute(&s.site),
                alloc_per_s: self.allocated.per_minute(&s.site).map(|r| r / 60.0),
                inuse: s.inuse_bytes,
                oldest: s.oldest,
                site: s.site,
            })
            .collect();
        let live = &report.goroutines.live_by_site;
        for s in live {
            self.live.record(&s.site, t, s.live as f64);
        }
        self.go = live
            .iter()
            .map(|s| GoRow {
                growth_per_min: self.live.per_minute(&s.site),
                site: s.site.clone(),
                function: s.function.clone(),
                live: s.live,
                blocked: s.blocked,
                oldest: s.ages.seconds.iter().rposition(|&n| n > 0),
            })
            .collect();
        for trends in [&mut self.inuse, &mut self.allocated, &mut self.live] {
            trends.forget_before(t - TREND_WINDOW_S);
        }
        self.findings = report.findings.clone();
    }

    fn key(&mut self, key: KeyEvent) -> Action {
        let columns = self.view.sort_columns().len().max(1);
        let i = self.view as usize;
        let last = self.lines().saturating_sub(1);
        let scroll = &mut self.scroll[i];
        let sort = &mut self.sort[i];
        match key.code {
            KeyCode::Down | KeyCode::Char('j') => *scroll = (*scroll + 1).min(last),
            KeyCode::Up | KeyCode::Char('k') => *scroll = scroll.saturating_sub(1),
            KeyCode::PageDown | KeyCode::Char(' ') => *scroll = (*scroll + PAGE).min(last),
            KeyCode::PageUp => *scroll = scroll.saturating_sub(PAGE),
            KeyCode::Home => *scroll = 0,
            // Raw mode delivers Ctrl-C as a key, not as SIGINT.
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                return Action::Quit
            }
            KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Char('1') => self.view = View::Heap,
            KeyCode::Char('2') => self.view = View::Go,
            KeyCode::Char('3') => self.view = View::Findings,
            KeyCode::Tab => self.view = View::ALL[(i + 1) % View::ALL.len()],
            KeyCode::BackTab => self.view = View::ALL[(i + View::ALL.len() - 1) % View::ALL.len()],
            KeyCode::Char('s') | KeyCode::Char('>') | KeyCode::Right => {
                *sort = (*sort + 1) % columns
            }
            KeyCode::Char('<') | KeyCode::Left => *sort = (*sort + columns - 1) % columns,
            KeyCode::Char('?') | KeyCode::Char('h') => self.help = !self.help,
            _ => {}
        }
        Action::Redraw
    }

    /// The rows (lines, for the findings) of the current view.
    fn lines(&self) -> usize {
        match self.view {
            View::Heap => self.heap.len(),
            View::Go => self.go.len(),
            View::Findings => self.finding_lines().len(),
        }
    }

    fn scrolled(&self) -> usize {
        self.scroll[self.view as usize]
    }

    fn sorted_by(&self) -> usize {
        self.sort[self.view as usize]
    }

    fn render(&self, f: &mut Frame<'_>) {
        let help_lines = if self.help { HELP.len() as u16 } else { 0 };
        let [title, summary, tabs, body, help, keys] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Min(1),
            Constraint::Length(help_lines),
            Constraint::Length(1),
        ])
        .areas(f.area());
        let bold = Style::default().add_modifier(Modifier::BOLD);
        f.render_widget(Paragraph::new(self.title.as_str()).style(bold), title);
        f.render_widget(Paragraph::new(self.summary.as_str()), summary);
        f.render_widget(self.tabs(), tabs);
        match self.view {
            View::Heap => self.render_heap(f, body),
            View::Go => self.render_go(f, body),
            View::Findings => self.render_findings(f, body),
        }
        if self.help {
            f.render_widget(
                Paragraph::new(HELP.iter().map(|l| Line::from(*l)).collect::<Vec<_>>()),
                help,
            );
        }
        let line = match &self.status {
            Some(status) => Line::from(Span::styled(status.as_str(), bold)),
            None => {
                let sort = self
                    .view
                    .sort_columns()
                    .get(self.sorted_by())
                    .map(|c| format!(" (by {})", c.to_lowercase()))
                    .unwrap_or_default();
                Line::from(format!(
                    "q quit · 1 2 3 / Tab views · s < > sort{sort} · ? help"
                ))
            }
        };
        f.render_widget(Paragraph::new(line), keys);
    }

    fn tabs(&self) -> Paragraph<'_> {
        let mut spans = Vec::new();
        for (i, v) in View::ALL.iter().enumerate() {
            let mut label = format!(" {} {} ", i + 1, v.title());
            if *v == View::Findings {
                label = format!(" {} {} ({}) ", i + 1, v.title(), self.findings.len());
            }
            let style = if *v == self.view {
                Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
            } else {
                Style::default()
            };
            spans.push(Span::styled(label, style));
            spans.push(Span::raw(" "));
        }
        Paragraph::new(Line::from(spans))
    }

    fn render_heap(&self, f: &mut Frame<'_>, area: Rect) {
        if let Some(note) = &self.heap_note {
            f.render_widget(Paragraph::new(note.as_str()), area);
            return;
        }
        let by = self.sorted_by();
        let mut rows: Vec<&HeapRow> = self.heap.iter().collect();
        let key = |r: &HeapRow| match by {
            0 => Some(r.inuse as f64),
            1 => r.growth_per_min,
            2 => r.alloc_per_s,
            _ => r.oldest.map(f64::from),
        };
        rows.sort_by(|a, b| {
            key(b)
                .unwrap_or(f64::MIN)
                .total_cmp(&key(a).unwrap_or(f64::MIN))
        });
        let rows = rows.into_iter().skip(self.scrolled()).map(|r| {
            Row::new([
                number(human_bytes(r.inuse)),
                number(signed_bytes(r.growth_per_min)),
                number(
                    r.alloc_per_s
                        .map_or("-".into(), |b| human_bytes(b.max(0.0) as u64)),
                ),
                number(r.oldest.map_or("-".into(), |a| a.to_string())),
                Cell::from(site(&r.site)),
            ])
        });
        let widths = [
            Constraint::Length(11),
            Constraint::Length(12),
            Constraint::Length(11),
            Constraint::Length(8),
            Constraint::Fill(1),
        ];
        f.render_widget(
            Table::new(rows, widths).header(header(&HEAP_COLUMNS, 4, by)),
            area,
        );
    }

    fn render_go(&self, f: &mut Frame<'_>, area: Rect) {
        if self.go.is_empty() {
            f.render_widget(Paragraph::new("no goroutine seen yet"), area);
            return;
        }
        let by = self.sorted_by();
        let mut rows: Vec<&GoRow> = self.go.iter().collect();
        let key = |r: &GoRow| match by {
            0 => Some(r.live as f64),
            1 => Some(r.blocked as f64),
            2 => r.growth_per_min,
            _ => r.oldest.map(|i| i as f64),
        };
        rows.sort_by(|a, b| {
            key(b)
                .unwrap_or(f64::MIN)
                .total_cmp(&key(a).unwrap_or(f64::MIN))
        });
        let rows = rows.into_iter().skip(self.scrolled()).map(|r| {
            Row::new([
                number(r.live.to_string()),
                number(r.blocked.to_string()),
                number(r.growth_per_min.map_or("-".into(), |g| format!("{g:+.0}"))),
                number(r.oldest.map_or("-", |i| GO_AGES[i]).to_string()),
                Cell::from(site(&r.site)),
                Cell::from(r.function.as_str()),
            ])
        });
        let widths = [
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(11),
            Constraint::Length(7),
            Constraint::Fill(3),
            Constraint::Fill(2),
        ];
        f.render_widget(
            Table::new(rows, widths).header(header(&GO_COLUMNS, 4, by)),
            area,
        );
    }

    fn render_findings(&self, f: &mut Frame<'_>, area: Rect) {
        if self.findings.is_empty() {
            f.render_widget(
                Paragraph::new(
                    "no finding yet (the detectors need a few GC cycles or tens of seconds of \
                     growth to judge)",
                ),
                area,
            );
            return;
        }
        let scroll = u16::try_from(self.scrolled()).unwrap_or(u16::MAX);
        f.render_widget(
            Paragraph::new(self.finding_lines())
                .wrap(Wrap { trim: false })
                .scroll((scroll, 0)),
            area,
        );
    }

    /// Each finding as `gotrace attach` prints it, its first line in bold, a blank line after.
    fn finding_lines(&self) -> Vec<Line<'static>> {
        let mut lines = Vec::new();
        for finding in &self.findings {
            let text = super::summary::finding(finding);
            let mut text = text.lines();
            if let Some(first) = text.next() {
                lines.push(Line::from(Span::styled(
                    first.to_string(),
                    Style::default().add_modifier(Modifier::BOLD),
                )));
            }
            lines.extend(text.map(|l| Line::from(l.to_string())));
            lines.push(Line::default());
        }
        lines
    }
}

/// Rows a PageUp/PageDown moves.
const PAGE: usize = 10;

const HELP: [&str; 7] = [
    "heap sites: Go's heap profile as of the last GC cycle, per allocation site (sampled, scaled as pprof does)",
    "  growth of the bytes in use and allocation rate over the last minute; age: GC cycles its oldest object survived",
    "go statements: goroutines alive now per `go` statement, of which blocked; growth of the live count",
    "  over the last minute; the age of the oldest (since attach at most)",
    "findings: the leak detectors' current verdicts, as `gotrace attach` reports them",
    "keys: 1 2 3 or Tab/Shift-Tab views · s or > next sort column, < previous · ↑ ↓ (j k) PgUp PgDn Home scroll",
    "      ? this help · q, Esc or Ctrl-C quit",
];

/// A table's header, the sort column marked; the first `numeric` columns right-aligned as
/// their numbers are.
fn header(columns: &[&'static str], numeric: usize, sorted_by: usize) -> Row<'static> {
    Row::new(columns.iter().enumerate().map(|(i, c)| {
        let mut line = Line::from(if i == sorted_by {
            format!("{c}▼")
        } else {
            c.to_string()
        });
        if i < numeric {
            line = line.right_aligned();
        }
        let cell = Cell::from(line);
        if i == sorted_by {
            cell.style(Style::default().add_modifier(Modifier::REVERSED))
        } else {
            cell
        }
    }))
    .style(Style::default().add_modifier(Modifier::BOLD))
}

/// A number, right-aligned so that magnitudes line up.
fn number(text: String) -> Cell<'static> {
    Cell::from(Line::from(text).right_aligned())
}

/// `function (dir/file.go:line)`: the file's last two components say enough on a screen.
fn site(s: &Site) -> String {
    if s.file.is_empty() {
        return s.function.clone();
    }
    let short = s
        .file
        .rsplitn(3, '/')
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("/");
    format!("{} ({short}:{})", s.function, s.line)
}

fn signed_bytes(b: Option<f64>) -> String {
    match b {
        None => "-".into(),
        Some(b) if b < 0.0 => format!("-{}", human_bytes((-b) as u64)),
        Some(b) => format!("+{}", human_bytes(b as u64)),
    }
}

/// How far back growth and rates look.
const TREND_WINDOW_S: f64 = 60.0;
/// Points kept per key, whatever the tick: a window of them at 100 ms ticks.
const TREND_POINTS: usize = 600;

/// Recent values per key (a site), for their change per minute: bounded by the window in time
/// and points, and to the keys seen within it.
struct Trends<K> {
    points: HashMap<K, VecDeque<(f64, f64)>>,
}

impl<K> Default for Trends<K> {
    fn default() -> Self {
        Trends {
            points: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> Trends<K> {
    fn record(&mut self, key: &K, t: f64, value: f64) {
        let points = match self.points.get_mut(key) {
            Some(p) => p,
            None => self.points.entry(key.clone()).or_default(),
        };
        if points.len() == TREND_POINTS {
            points.pop_front();
        }
        points.push_back((t, value));
    }

    /// The change per minute from the oldest point kept to the newest (`None` with one point).
    fn per_minute(&self, key: &K) -> Option<f64> {
        let points = self.points.get(key)?;
        let (&(t0, v0), &(t1, v1)) = (points.front()?, points.back()?);
        (t1 > t0).then(|| (v1 - v0) / (t1 - t0) * 60.0)
    }

    fn forget_before(&mut self, t: f64) {
        self.points.retain(|_, points| {
            while points.front().is_some_and(|(pt, _)| *pt < t) {
                points.pop_front();
            }
            !points.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trends_give_the_change_per_minute_over_the_window() {
        let mut t: Trends<&str> = Trends::default();
        assert_eq!(t.per_minute(&"a"), None);
        t.record(&"a", 0.0, 100.0);
        assert_eq!(t.per_minute(&"a"), None, "one point is no trend");
        t.record(&"a", 30.0, 400.0);
        assert_eq!(t.per_minute(&"a"), Some(600.0));
        t.record(&"a", 90.0, 400.0);
        t.forget_before(90.0 - TREND_WINDOW_S);
        assert_eq!(
            t.per_minute(&"a"),
            Some(0.0),
            "the first point is out of the window"
        );
        t.forget_before(100.0);
        assert!(
            t.points.is_empty(),
            "keys not seen in the window are dropped"
        );
        for i in 0..TREND_POINTS + 10 {
            t.record(&"b", i as f64, i as f64);
        }
        assert_eq!(t.points[&"b"].len(), TREND_POINTS);
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn handle(function: &str) -> Site {
        Site {
            function: function.into(),
            file: "/src/app/main.go".into(),
            line: 7,
            inlined: false,
        }
    }

    /// The screen as text, one string a line.
    fn screen(top: &Top) -> Vec<String> {
        let mut terminal = Terminal::new(ratatui::backend::TestBackend::new(100, 12)).unwrap();
        terminal.draw(|f| top.render(f)).unwrap();
        let buffer = terminal.backend().buffer();
        (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect()
    }

    #[test]
    fn keys_switch_views_cycle_sorts_and_quit() {
        let mut top = Top::new("t".into());
        assert_eq!(top.key(key(KeyCode::Char('2'))), Action::Redraw);
        assert_eq!(top.view, View::Go);
        top.key(key(KeyCode::Tab));
        assert_eq!(top.view, View::Findings);
        top.key(key(KeyCode::Tab));
        assert_eq!(top.view, View::Heap, "Tab wraps around");
        top.key(key(KeyCode::BackTab));
        assert_eq!(top.view, View::Findings);
        top.key(key(KeyCode::Char('1')));
        top.key(key(KeyCode::Char('<')));
        assert_eq!(
            top.sorted_by(),
            3,
            "< from the first column wraps to the last"
        );
        top.key(key(KeyCode::Char('s')));
        assert_eq!(top.sorted_by(), 0);
        top.key(key(KeyCode::Char('2')));
        assert_eq!(top.sorted_by(), 0, "each view keeps its own sort");
        assert_eq!(top.key(key(KeyCode::Char('q'))), Action::Quit);
        assert_eq!(
            top.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Action::Quit,
            "Ctrl-C, a key in raw mode"
        );
        assert_eq!(top.key(key(KeyCode::Char('c'))), Action::Redraw);
    }

    #[test]
    fn the_heap_view_sorts_by_the_chosen_column() {
        let mut top = Top::new("gotrace top │ pid 1".into());
        top.heap = vec![
            HeapRow {
                site: handle("main.big"),
                inuse: 64 << 20,
                growth_per_min: Some(0.0),
                alloc_per_s: None,
                oldest: Some(3),
            },
            HeapRow {
                site: handle("main.leak"),
                inuse: 2 << 20,
                growth_per_min: Some(5.0 * 1048576.0),
                alloc_per_s: Some(1024.0),
                oldest: Some(40),
            },
        ];
        let rows = |top: &Top| -> Vec<String> {
            screen(top)
                .into_iter()
                .filter(|l| l.contains("main.") && l.contains("(app/main.go:7)"))
                .collect()
        };
        let by_inuse = rows(&top);
        assert!(
            by_inuse[0].contains("64.0 MiB") && by_inuse[0].contains("main.big"),
            "{by_inuse:?}"
        );
        assert!(
            by_inuse[1].contains("+5.0 MiB") && by_inuse[1].contains("1.0 KiB"),
            "{by_inuse:?}"
        );
        top.key(key(KeyCode::Char('s')));
        let by_growth = rows(&top);
        assert!(by_growth[0].contains("main.leak"), "{by_growth:?}");
        assert!(screen(&top).iter().any(|l| l.contains("GROWTH/MIN▼")));
        top.key(key(KeyCode::Down));
        assert_eq!(rows(&top).len(), 1, "scrolled by a row");
    }

    #[test]
    fn sites_keep_the_last_two_path_components() {
        let s = Site {
            function: "main.handle".into(),
            file: "/src/tests/fixtures/heapgrow/main.go".into(),
            line: 30,
            inlined: false,
        };
        assert_eq!(site(&s), "main.handle (heapgrow/main.go:30)");
    }
}
