//! Rendering: the whole screen drawn from `&State` alone (no I/O, no clock of its
//! own). Only the rows on screen are built, so a thousand jobs cost what twenty do.

mod format;
mod theme;

use petit_client::vocab::Vocabulary;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Table, Tabs};
use ratatui::Frame;

use crate::state::{
    Confirm, Connection, FeedEntry, JobRow, LogView, Overlay, RunRow, State, Tab, TaskRow,
};
pub use format::short_id;
use theme::Theme;

/// Every key, for the help overlay and `--help`.
pub const KEYS: &[(&str, &str)] = &[
    ("Tab 1-4", "switch tabs: Jobs, Runs, Tasks, Events"),
    ("↑ ↓ j k", "move (PgUp PgDn g G: page, top, bottom)"),
    ("Enter", "job → its runs → a run's tasks → task logs"),
    ("t", "trigger the selected job (asks y/n)"),
    ("c", "cancel the selected run (asks y/n)"),
    ("p", "pause or resume the selected job (Jobs tab)"),
    ("P", "pause or resume the whole scheduler"),
    ("l", "follow the selected task's logs (run: all tasks)"),
    ("z", "times: next fires in the job's zone, local, UTC"),
    ("/", "filter the list: type, Enter keeps, Esc clears"),
    ("Esc", "clear the filter, then the job filter, then quit"),
    ("?", "this help"),
    ("q", "close the overlay, or quit"),
];

/// Rows of a list's page in a terminal `height` rows tall: the tab bar, the block's
/// borders, the table header, the message line and the status bar take six.
pub fn list_rows(height: u16) -> usize {
    usize::from(height.saturating_sub(6)).max(1)
}

pub fn draw(frame: &mut Frame, state: &State) {
    let theme = Theme::new(state.color);
    let [tabs, body, message, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    draw_tabs(frame, tabs, state, theme);
    match state.tab {
        Tab::Jobs => draw_jobs(frame, body, state, theme),
        Tab::Runs => draw_runs(frame, body, state, theme),
        Tab::Tasks => draw_tasks(frame, body, state, theme),
        Tab::Events => draw_events(frame, body, state, theme),
    }
    draw_message(frame, message, state, theme);
    draw_status(frame, status, state, theme);

    match &state.overlay {
        None => {}
        Some(Overlay::Help) => draw_help(frame, body, theme),
        Some(Overlay::Confirm(confirm)) => draw_confirm(frame, body, confirm, theme),
        Some(Overlay::Logs(view)) => draw_logs(frame, body.union(message), state, view, theme),
    }
}

fn draw_tabs(frame: &mut Frame, area: Rect, state: &State, theme: Theme) {
    let titles = Tab::ALL
        .iter()
        .enumerate()
        .map(|(i, tab)| format!("{} {}", i + 1, tab.title()));
    let tabs = Tabs::new(titles)
        .select(state.tab.index())
        .highlight_style(theme.tab());
    frame.render_widget(tabs, area);
}

/// What a list looks like, beside its rows.
struct ListSpec<'a, const N: usize> {
    title: String,
    header: [&'a str; N],
    widths: [Constraint; N],
    /// The selected row and the number of rows.
    position: (usize, usize),
    empty: &'a str,
    /// A line about the selected row, on the bottom border.
    footer: String,
}

/// A bordered table showing the page of `items` that holds the selected row.
fn draw_list<'a, T: 'a, const N: usize>(
    frame: &mut Frame,
    area: Rect,
    theme: Theme,
    spec: ListSpec<'_, N>,
    items: impl Iterator<Item = &'a T>,
    row: impl Fn(&'a T) -> Row<'a>,
) {
    let (selected, len) = spec.position;
    let title = format!(" {} ", spec.title);
    let counter = format!(" {}/{len} ", selected + 1);
    // The counter goes where it does not run into the title.
    let room = usize::from(area.width).saturating_sub(4);
    let mut block = Block::bordered()
        .border_style(theme.border())
        .title(Line::from(title.as_str()));
    if len > 0 && title.chars().count() + counter.len() <= room {
        block = block.title(Line::from(counter).right_aligned());
    }
    if !spec.footer.is_empty() {
        block = block.title_bottom(Line::from(format!(" {} ", spec.footer)));
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if len == 0 {
        let empty = Paragraph::new(spec.empty).style(theme.dim()).centered();
        let [middle] = Layout::vertical([Constraint::Length(1)])
            .flex(Flex::Center)
            .areas(inner);
        frame.render_widget(empty, middle);
        return;
    }
    let page = usize::from(inner.height.saturating_sub(1)).max(1);
    let first = selected / page * page;
    let rows = items.skip(first).take(page).enumerate().map(|(i, item)| {
        let r = row(item);
        if first + i == selected {
            r.style(theme.selected())
        } else {
            r
        }
    });
    let header = Row::new(spec.header).style(theme.header());
    let table = Table::new(rows, spec.widths).header(header);
    frame.render_widget(table, inner);
}

/// A filter's note for a list title.
fn filtered(state: &State, tab: Tab) -> String {
    let f = state.filter(tab);
    if f.is_empty() {
        String::new()
    } else {
        format!(" · filter \"{f}\"")
    }
}

fn draw_jobs<'a>(frame: &mut Frame, area: Rect, state: &'a State, theme: Theme) {
    let spec = ListSpec {
        title: format!("Jobs{}", filtered(state, Tab::Jobs)),
        header: ["ID", "NAME", "SCHEDULE", "NEXT FIRE", "LAST", "ON"],
        widths: [
            Constraint::Length(16),
            Constraint::Fill(1),
            Constraint::Length(13),
            Constraint::Length(17),
            Constraint::Length(11),
            Constraint::Length(3),
        ],
        position: state.position(Tab::Jobs),
        empty: empty_text(state, "no jobs", Tab::Jobs),
        footer: state
            .selected_job()
            .map(|j| j.policy.clone())
            .unwrap_or_default(),
    };
    let row = |j: &'a JobRow| -> Row<'a> {
        let next = match (&j.schedule, j.next_fire(state.now)) {
            (None, _) => "-".to_string(),
            (Some(_), _) if j.paused => "paused".to_string(),
            (Some(_), Some(t)) => format::when_in(t, state.now, state.zones.for_fires(j.zone)),
            // All listed fire times passed: fresh ones are on their way.
            (Some(_), None) if !j.next_fires.is_empty() => "…".to_string(),
            (Some(_), None) => "never".to_string(),
        };
        let last = match j.last_run {
            Some(last) => word(last.status, theme),
            None => Cell::from("-").style(theme.dim()),
        };
        Row::new([
            Cell::from(j.id.as_str()),
            Cell::from(j.name.as_str()),
            Cell::from(j.schedule.as_deref().unwrap_or("manual")),
            Cell::from(next),
            last,
            Cell::from(if j.enabled { "yes" } else { "no" }),
        ])
    };
    draw_list(frame, area, theme, spec, state.visible_jobs(), row);
}

/// A cell with the word of a status, trigger or event type, in its tone.
fn word<'a>(value: impl Vocabulary, theme: Theme) -> Cell<'a> {
    Cell::from(value.label()).style(theme.tone(value.tone()))
}

fn draw_runs<'a>(frame: &mut Frame, area: Rect, state: &'a State, theme: Theme) {
    let of = match &state.runs_of_job {
        Some(job) => format!("Runs of {job}"),
        None => "Runs".to_string(),
    };
    let spec = ListSpec {
        title: format!("{of}{}", filtered(state, Tab::Runs)),
        header: ["RUN", "JOB", "STATUS", "TRIGGER", "STARTED", "DURATION"],
        widths: [
            Constraint::Length(10),
            Constraint::Fill(1),
            Constraint::Length(11),
            Constraint::Length(8),
            Constraint::Length(11),
            Constraint::Length(8),
        ],
        position: state.position(Tab::Runs),
        empty: empty_text(state, "no runs yet: t triggers the selected job", Tab::Runs),
        footer: String::new(),
    };
    let row = |r: &'a RunRow| -> Row<'a> {
        Row::new([
            Cell::from(short_id(&r.id)),
            Cell::from(r.job_id.as_str()),
            word(r.status, theme),
            word(r.trigger, theme),
            Cell::from(format::when(
                r.started_at.unwrap_or(r.created_at),
                state.now,
                state.zones.for_events(),
            )),
            Cell::from(format::elapsed(r.started_at, r.ended_at, state.now)),
        ])
    };
    draw_list(frame, area, theme, spec, state.visible_runs(), row);
}

fn draw_tasks<'a>(frame: &mut Frame, area: Rect, state: &'a State, theme: Theme) {
    let title = match &state.run_view {
        Some(v) if !v.run.triggered_by.is_empty() => format!(
            "Tasks of {} run {} ({}) by {}",
            v.run.job_id,
            v.run.id,
            v.run.status.label(),
            v.run.triggered_by
        ),
        Some(v) => format!(
            "Tasks of {} run {} ({})",
            v.run.job_id,
            v.run.id,
            v.run.status.label()
        ),
        None => "Tasks".to_string(),
    };
    let empty = match &state.run_view {
        None => "no run selected: Enter on a run shows its tasks",
        Some(_) => empty_text(state, "no task has started yet", Tab::Tasks),
    };
    let spec = ListSpec {
        title: format!("{title}{}", filtered(state, Tab::Tasks)),
        header: ["TASK", "STATUS", "ATTEMPTS", "DURATION", "EXIT", "ERROR"],
        widths: [
            Constraint::Length(18),
            Constraint::Length(11),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(4),
            Constraint::Fill(1),
        ],
        position: state.position(Tab::Tasks),
        empty,
        footer: String::new(),
    };
    let row = |t: &'a TaskRow| -> Row<'a> {
        Row::new([
            Cell::from(t.task_id.as_str()),
            word(t.status, theme),
            Cell::from(t.attempts.to_string()),
            Cell::from(format::elapsed(t.started_at, t.ended_at, state.now)),
            Cell::from(
                t.exit_code
                    .map_or_else(|| "-".to_string(), |c| c.to_string()),
            ),
            Cell::from(t.error.as_str()).style(theme.error()),
        ])
    };
    draw_list(frame, area, theme, spec, state.visible_tasks(), row);
}

fn draw_events<'a>(frame: &mut Frame, area: Rect, state: &'a State, theme: Theme) {
    let spec = ListSpec {
        title: format!("Events, newest first{}", filtered(state, Tab::Events)),
        header: ["TIME", "EVENT", "JOB", "RUN", "DETAIL"],
        widths: [
            Constraint::Length(8),
            Constraint::Length(17),
            Constraint::Length(15),
            Constraint::Length(8),
            Constraint::Fill(1),
        ],
        position: state.position(Tab::Events),
        empty: empty_text(state, "no events since connecting", Tab::Events),
        footer: String::new(),
    };
    let row = |e: &'a FeedEntry| -> Row<'a> {
        let detail = match (e.task_id.as_str(), e.message.as_str()) {
            ("", m) => m.to_string(),
            (t, "") => t.to_string(),
            (t, m) => format!("{t}: {m}"),
        };
        Row::new([
            Cell::from(
                e.time
                    .map_or_else(String::new, |t| format::clock(t, state.zones.for_events())),
            ),
            word(e.kind, theme),
            Cell::from(e.job_id.as_str()),
            Cell::from(short_id(&e.run_id)),
            Cell::from(detail),
        ])
    };
    draw_list(frame, area, theme, spec, state.visible_events(), row);
}

/// What an empty list says: why it is empty.
fn empty_text<'a>(state: &State, nothing: &'a str, tab: Tab) -> &'a str {
    if state.connection != Connection::Connected && state.jobs.is_empty() {
        "waiting for petitd…"
    } else if !state.filter(tab).is_empty() {
        "nothing matches the filter (Esc clears it)"
    } else {
        nothing
    }
}

fn draw_message(frame: &mut Frame, area: Rect, state: &State, theme: Theme) {
    let line = if state.editing_filter {
        Line::from(vec![
            Span::styled("filter: ", theme.header()),
            Span::raw(state.filter(state.tab)),
            Span::styled("█", theme.dim()),
            Span::styled("  Enter keeps · Esc clears", theme.dim()),
        ])
    } else if let Some(notice) = state.notice() {
        let style = if notice.error {
            theme.error()
        } else {
            theme.good()
        };
        Line::styled(notice.text.as_str(), style)
    } else if let Connection::Reconnecting { error, .. } = &state.connection {
        // Why the connection is down says more than the usual hints.
        Line::styled(error.as_str(), theme.warn())
    } else {
        Line::styled(hints(state), theme.dim())
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The keys that matter on the current tab.
fn hints(state: &State) -> &'static str {
    match (state.tab, &state.overlay) {
        (_, Some(Overlay::Logs(_))) => "↑↓ scroll · g top · G follow · q close",
        (Tab::Jobs, _) => {
            "Enter runs · t trigger · p/P pause job/all · z zone · / filter · ? help · q quit"
        }
        (Tab::Runs, _) if state.runs_of_job.is_some() => {
            "Enter tasks · l logs · c cancel · t trigger · Esc all runs · ? help"
        }
        (Tab::Runs, _) => "Enter tasks · l logs · c cancel · / filter · ? help · q quit",
        (Tab::Tasks, _) => "Enter/l logs · c cancel run · t trigger again · / filter · ? help",
        (Tab::Events, _) => "Enter the run's tasks · / filter · ? help · q quit",
    }
}

fn draw_status(frame: &mut Frame, area: Rect, state: &State, theme: Theme) {
    let bar = theme.bar();
    let connection = match &state.connection {
        Connection::Connecting => Span::styled("connecting…", bar),
        Connection::Connected => Span::styled("● connected", bar.patch(theme.good())),
        Connection::Reconnecting { retry_at, .. } => {
            let text = match format::seconds_until(*retry_at, state.now) {
                0 => "reconnecting…".to_string(),
                s => format!("reconnecting in {s}s…"),
            };
            Span::styled(text, bar.patch(theme.warn()))
        }
    };
    let mut left = Line::from(vec![
        Span::raw(" "),
        Span::raw(state.server.as_str()),
        Span::raw(" │ "),
        connection,
        Span::raw(" │ scheduler "),
        Span::raw(state.scheduler.label()),
    ]);
    // The zone of every time on screen but the next fire times, which say their own.
    let zone = state.zones.for_events();
    let clock = format!(
        "{} {} ",
        format::clock(state.now, zone),
        zone.abbreviation(state.now)
    );
    if let Some(cluster) = &state.cluster {
        let tone = match cluster.alive == cluster.total && cluster.mismatched.is_empty() {
            true => bar,
            false => bar.patch(theme.warn()),
        };
        // As much as fits between the rest and the clock: the longest form first.
        let room = (area.width as usize).saturating_sub(left.width() + clock.chars().count() + 1);
        let differs = match cluster.mismatched.len() {
            0 => String::new(),
            n => format!(" · {n} job(s) differ"),
        };
        let forms = [
            format!(
                " │ node {} · {}/{} nodes up{differs}",
                cluster.node, cluster.alive, cluster.total
            ),
            format!(
                " │ {} {}/{} up{}",
                cluster.node,
                cluster.alive,
                cluster.total,
                if differs.is_empty() { "" } else { " ⚠" }
            ),
            format!(" │ {}/{}", cluster.alive, cluster.total),
        ];
        if let Some(text) = forms.into_iter().find(|f| f.chars().count() <= room) {
            left.spans.push(Span::styled(text, tone));
        }
    }
    frame.render_widget(Paragraph::new(left).style(bar), area);
    frame.render_widget(Paragraph::new(clock).style(bar).right_aligned(), area);
}

/// A `width`×`height` box centred in `area` (shrunk to fit).
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [cell] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    cell
}

fn draw_help(frame: &mut Frame, area: Rect, theme: Theme) {
    let lines: Vec<Line> = KEYS
        .iter()
        .map(|(key, what)| {
            Line::from(vec![
                Span::styled(format!(" {key:<9}"), theme.header()),
                Span::raw(*what),
            ])
        })
        .collect();
    let height = u16::try_from(lines.len())
        .unwrap_or(u16::MAX)
        .saturating_add(2);
    let area = centered(area, 62, height);
    let block = Block::bordered()
        .title(" Keys ")
        .title_bottom(Line::from(" any key closes ").right_aligned());
    frame.render_widget(Clear, area);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_confirm(frame: &mut Frame, area: Rect, confirm: &Confirm, theme: Theme) {
    let question = match confirm {
        Confirm::Trigger { job_id } => format!("Trigger job {job_id} now?"),
        Confirm::Cancel { run_id } => format!("Cancel run {run_id}?"),
    };
    let text = Text::from(vec![
        Line::from(question),
        Line::from(vec![
            Span::styled("y", theme.header()),
            Span::raw(" yes   "),
            Span::styled("n", theme.header()),
            Span::raw(" no"),
        ]),
    ]);
    let width = u16::try_from(question_width(confirm))
        .unwrap_or(u16::MAX)
        .clamp(30, 76);
    let area = centered(area, width, 4);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(text)
            .centered()
            .block(Block::bordered().title(" Confirm ")),
        area,
    );
}

fn question_width(confirm: &Confirm) -> usize {
    let id = match confirm {
        Confirm::Trigger { job_id } => job_id,
        Confirm::Cancel { run_id } => run_id,
    };
    id.chars().count() + 24
}

fn draw_logs(frame: &mut Frame, area: Rect, state: &State, view: &LogView, theme: Theme) {
    let what = if view.task_id.is_empty() {
        format!(" Logs of run {} ", view.run_id)
    } else {
        format!(
            " Logs of {} in run {} ",
            view.task_id,
            short_id(&view.run_id)
        )
    };
    let mode = if view.scroll > 0 {
        format!(" {} lines back ", view.scroll)
    } else if view.ended {
        " ended ".to_string()
    } else {
        " following ".to_string()
    };
    let block = Block::bordered()
        .title(what)
        .title(Line::from(mode).right_aligned())
        .title_bottom(Line::styled(hints(state), theme.dim()).right_aligned());
    let inner = block.inner(area);
    frame.render_widget(Clear, area);
    frame.render_widget(block, area);
    if view.lines.is_empty() {
        let text = if view.ended {
            "no output"
        } else {
            "waiting for output…"
        };
        frame.render_widget(Paragraph::new(text).style(theme.dim()), inner);
        return;
    }
    let end = view.lines.len().saturating_sub(view.scroll);
    let start = end.saturating_sub(usize::from(inner.height));
    let all_tasks = view.task_id.is_empty();
    let lines: Vec<Line> = view
        .lines
        .range(start..end)
        .map(|l| {
            let style = if l.stderr {
                theme.error()
            } else {
                Style::new()
            };
            let mut spans = Vec::with_capacity(2);
            if all_tasks {
                spans.push(Span::styled(format!("{} │ ", l.task_id), theme.dim()));
            }
            spans.push(Span::styled(l.line.as_str(), style));
            Line::from(spans)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

#[cfg(test)]
mod tests;
