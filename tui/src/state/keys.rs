//! Key presses: what each key does to the state, and the command it asks of the
//! server, if any.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use petit_client::vocab::{Lifecycle as _, Vocabulary as _};

use super::{
    Command, Confirm, LogView, Overlay, RunRow, RunStatus, RunView, SchedulerStatus, State, Tab,
    TriggerReason, MAX_FILTER_CHARS,
};

impl State {
    /// Folds one key press into the state; returns what to ask the server, if
    /// anything.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Command> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return None;
        }
        if self.editing_filter {
            self.edit_filter(key.code);
            return None;
        }
        if let Some(overlay) = self.overlay.take() {
            return self.overlay_key(overlay, key.code);
        }
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Esc => self.escape(),
            KeyCode::Char('?') => self.overlay = Some(Overlay::Help),
            KeyCode::Tab => return self.switch_tab(self.tab.next()),
            KeyCode::BackTab => return self.switch_tab(self.tab.prev()),
            KeyCode::Char(c @ '1'..='4') => {
                let i = usize::from(c as u8 - b'1');
                return self.switch_tab(Tab::ALL[i]);
            }
            KeyCode::Up | KeyCode::Char('k') => self.move_cursor(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_cursor(1),
            KeyCode::PageUp => self.move_cursor(-page(self.page_rows)),
            KeyCode::PageDown => self.move_cursor(page(self.page_rows)),
            KeyCode::Home | KeyCode::Char('g') => self.move_cursor(isize::MIN),
            KeyCode::End | KeyCode::Char('G') => self.move_cursor(isize::MAX),
            KeyCode::Enter => return self.drill_down(),
            KeyCode::Char('t') => self.ask_trigger(),
            KeyCode::Char('c') => self.ask_cancel(),
            KeyCode::Char('p') => return self.pause_or_resume_job(),
            KeyCode::Char('P') => return self.pause_or_resume(),
            KeyCode::Char('l') => return self.open_logs(),
            KeyCode::Char('z') => {
                self.zones.choice = self.zones.choice.next();
                self.say(format!("times: {}", self.zones.choice.describe()), false);
            }
            KeyCode::Char('/') => {
                self.editing_filter = true;
                self.filters[self.tab.index()].clear();
            }
            _ => {}
        }
        None
    }

    fn edit_filter(&mut self, code: KeyCode) {
        let filter = &mut self.filters[self.tab.index()];
        match code {
            KeyCode::Enter => self.editing_filter = false,
            KeyCode::Esc => {
                filter.clear();
                self.editing_filter = false;
            }
            KeyCode::Backspace => {
                filter.pop();
            }
            KeyCode::Char(c) if !c.is_control() && filter.chars().count() < MAX_FILTER_CHARS => {
                filter.push(c);
            }
            _ => {}
        }
    }

    /// A key while an overlay is open: it closes the overlay, acts within it, or is
    /// ignored (the overlay stays).
    fn overlay_key(&mut self, overlay: Overlay, code: KeyCode) -> Option<Command> {
        match overlay {
            // Any key closes the help.
            Overlay::Help => None,
            Overlay::Confirm(confirm) => match code {
                KeyCode::Char('y' | 'Y') => {
                    let (text, command) = match confirm {
                        Confirm::Trigger { job_id } => {
                            (format!("triggering {job_id}…"), Command::Trigger { job_id })
                        }
                        Confirm::Cancel { run_id } => (
                            format!("cancelling run {run_id}…"),
                            Command::Cancel { run_id },
                        ),
                    };
                    // Until the answer comes, say that something is happening.
                    self.say(text, false);
                    Some(command)
                }
                KeyCode::Char('n' | 'N' | 'q') | KeyCode::Esc => None,
                _ => {
                    self.overlay = Some(Overlay::Confirm(confirm));
                    None
                }
            },
            Overlay::Logs(mut view) => {
                let newest = view.lines.len().saturating_sub(1);
                let scroll = |by: isize| view.scroll.saturating_add_signed(by).min(newest);
                view.scroll = match code {
                    KeyCode::Char('q') | KeyCode::Esc => return Some(Command::StopLogs),
                    KeyCode::Up | KeyCode::Char('k') => scroll(1),
                    KeyCode::Down | KeyCode::Char('j') => scroll(-1),
                    KeyCode::PageUp => scroll(page(self.page_rows)),
                    KeyCode::PageDown => scroll(-page(self.page_rows)),
                    KeyCode::Home | KeyCode::Char('g') => newest,
                    KeyCode::End | KeyCode::Char('G') => 0,
                    _ => view.scroll,
                };
                self.overlay = Some(Overlay::Logs(view));
                None
            }
        }
    }

    /// Esc steps back: clears the tab's filter, then the Runs tab's job, then quits.
    fn escape(&mut self) {
        let filter = &mut self.filters[self.tab.index()];
        if !filter.is_empty() {
            filter.clear();
        } else if self.tab == Tab::Runs && self.runs_of_job.is_some() {
            self.runs_of_job = None;
        } else {
            self.quit = true;
        }
    }

    fn switch_tab(&mut self, tab: Tab) -> Option<Command> {
        self.tab = tab;
        // The Tasks tab shows the selected run's tasks; with none chosen yet, take the
        // one under the Runs cursor.
        if tab == Tab::Tasks && self.run_view.is_none() {
            let run = self.selected_run()?.clone();
            return Some(self.view_run(run));
        }
        None
    }

    fn move_cursor(&mut self, delta: isize) {
        let step = |(at, len): (usize, usize)| -> usize {
            if len == 0 {
                return 0;
            }
            at.saturating_add_signed(delta).min(len - 1)
        };
        match self.tab {
            Tab::Jobs => {
                let i = step(self.position(Tab::Jobs));
                let id = self.visible_jobs().nth(i).map(|j| j.id.clone());
                self.cursors.job = id;
            }
            Tab::Runs => {
                let i = step(self.position(Tab::Runs));
                let id = self.visible_runs().nth(i).map(|r| r.id.clone());
                self.cursors.run = id;
            }
            Tab::Tasks => {
                let i = step(self.position(Tab::Tasks));
                let id = self.visible_tasks().nth(i).map(|t| t.task_id.clone());
                self.cursors.task = id;
            }
            Tab::Events => self.cursors.event = step(self.position(Tab::Events)),
        }
    }

    /// Enter: a job shows its runs, a run its tasks, a task its output, an event its
    /// run's tasks.
    fn drill_down(&mut self) -> Option<Command> {
        match self.tab {
            Tab::Jobs => {
                let job_id = self.selected_job()?.id.clone();
                self.runs_of_job = Some(job_id.clone());
                self.cursors.run = None;
                self.tab = Tab::Runs;
                Some(Command::LoadJobRuns { job_id })
            }
            Tab::Runs => {
                let run = self.selected_run()?.clone();
                self.tab = Tab::Tasks;
                Some(self.view_run(run))
            }
            Tab::Tasks => self.open_logs(),
            Tab::Events => {
                let entry = self.selected_event()?;
                if entry.run_id.is_empty() {
                    return None;
                }
                let run = match self.runs.iter().find(|r| r.id == entry.run_id) {
                    Some(run) => run.clone(),
                    // Gone from the table: WatchRun fills the rest in.
                    None => RunRow {
                        id: entry.run_id.clone(),
                        job_id: entry.job_id.clone(),
                        status: RunStatus::Unspecified,
                        trigger: TriggerReason::Unspecified,
                        created_at: entry.time.unwrap_or(self.now),
                        started_at: None,
                        ended_at: None,
                        error: String::new(),
                        triggered_by: String::new(),
                    },
                };
                self.tab = Tab::Tasks;
                Some(self.view_run(run))
            }
        }
    }

    fn view_run(&mut self, run: RunRow) -> Command {
        let run_id = run.id.clone();
        self.cursors.run = Some(run_id.clone());
        self.cursors.task = None;
        self.run_view = Some(RunView {
            run,
            tasks: Vec::new(),
        });
        Command::WatchRun { run_id }
    }

    fn ask_trigger(&mut self) {
        let job_id = match self.tab {
            Tab::Jobs => self.selected_job().map(|j| j.id.clone()),
            Tab::Runs => self
                .runs_of_job
                .clone()
                .or_else(|| self.selected_run().map(|r| r.job_id.clone())),
            Tab::Tasks => self.run_view.as_ref().map(|v| v.run.job_id.clone()),
            Tab::Events => None,
        };
        match job_id {
            Some(job_id) => self.overlay = Some(Overlay::Confirm(Confirm::Trigger { job_id })),
            None => self.say("select a job to trigger (Jobs tab)", true),
        }
    }

    fn ask_cancel(&mut self) {
        let run = match self.tab {
            Tab::Runs => self.selected_run(),
            Tab::Tasks => self.run_view.as_ref().map(|v| &v.run),
            _ => None,
        };
        let Some(run) = run else {
            return self.say("select a run to cancel (Runs tab)", true);
        };
        if run.status.is_terminal() {
            let text = format!("run {} has already ended ({})", run.id, run.status.label());
            return self.say(text, true);
        }
        let run_id = run.id.clone();
        self.overlay = Some(Overlay::Confirm(Confirm::Cancel { run_id }));
    }

    /// `p`: the selected job's own pause (Jobs tab).
    fn pause_or_resume_job(&mut self) -> Option<Command> {
        if self.tab != Tab::Jobs {
            self.say(
                "select a job (Jobs tab) to pause it; P pauses the scheduler",
                true,
            );
            return None;
        }
        let job = self.selected_job()?;
        Some(Command::PauseJob {
            job_id: job.id.clone(),
            paused: !job.paused,
        })
    }

    fn pause_or_resume(&mut self) -> Option<Command> {
        match self.scheduler {
            SchedulerStatus::Running => Some(Command::Pause),
            SchedulerStatus::Paused => Some(Command::Resume),
            SchedulerStatus::Stopping => {
                self.say("the scheduler is stopping", true);
                None
            }
            SchedulerStatus::Unspecified => {
                self.say("the scheduler's state is not known yet", true);
                None
            }
        }
    }

    /// `l`: the selected task's output (Tasks tab), or every task's (Runs tab).
    fn open_logs(&mut self) -> Option<Command> {
        let (run_id, task_id) = match self.tab {
            Tab::Tasks => {
                let task = self.selected_task()?;
                (task.run_id.clone(), task.task_id.clone())
            }
            Tab::Runs => (self.selected_run()?.id.clone(), String::new()),
            _ => {
                self.say(
                    "select a task (Tasks tab) or a run (Runs tab) for logs",
                    true,
                );
                return None;
            }
        };
        self.overlay = Some(Overlay::Logs(LogView::new(run_id.clone(), task_id.clone())));
        Some(Command::FollowLogs { run_id, task_id })
    }
}

fn page(rows: usize) -> isize {
    isize::try_from(rows.max(1)).unwrap_or(isize::MAX)
}
