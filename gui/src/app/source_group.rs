//! One source of updates (a drive, computers nearby or the Internet) as a boxed list:
//! its updates, and why some of what it carries cannot be installed.

use std::sync::Arc;

use ferry_schema::{Problem, SourceKind};
use relm4::adw::prelude::*;
use relm4::factory::{DynamicIndex, FactoryComponent, FactorySender, FactoryVecDeque};
use relm4::{adw, gtk};

use super::update_row::{RowInit, RowInput, RowOutput, UpdateRow};
use crate::format;
use crate::i18n::{ntrf, tr};
use crate::listing::SourceGroup;
use crate::model::InstallRun;

#[derive(Debug, Clone)]
pub struct GroupInit {
    pub group: SourceGroup,
    pub run: Option<Arc<InstallRun>>,
    pub busy: bool,
}

#[derive(Debug, Clone)]
pub enum GroupInput {
    State {
        run: Option<Arc<InstallRun>>,
        busy: bool,
    },
}

#[derive(Debug)]
pub enum GroupOutput {
    Install(String),
}

pub struct SourceGroupView {
    group: SourceGroup,
    rows: FactoryVecDeque<UpdateRow>,
}

impl FactoryComponent for SourceGroupView {
    type ParentWidget = adw::PreferencesPage;
    type CommandOutput = ();
    type Input = GroupInput;
    type Output = GroupOutput;
    type Init = GroupInit;
    type Root = adw::PreferencesGroup;
    type Widgets = ();
    type Index = DynamicIndex;

    fn init_model(init: Self::Init, _index: &DynamicIndex, sender: FactorySender<Self>) -> Self {
        let root = adw::PreferencesGroup::new();
        let mut rows =
            FactoryVecDeque::builder()
                .launch(root)
                .forward(sender.output_sender(), |output| match output {
                    RowOutput::Install(id) => GroupOutput::Install(id),
                });
        let blocked = init.busy || !init.group.installable();
        {
            let mut guard = rows.guard();
            for (update, along) in init.group.shown() {
                guard.push_back(RowInit {
                    update: update.clone(),
                    along: along.into_iter().cloned().collect(),
                    run: init.run.clone(),
                    blocked,
                });
            }
        }
        Self {
            group: init.group,
            rows,
        }
    }

    fn init_root(&self) -> Self::Root {
        self.rows.widget().clone()
    }

    fn init_widgets(
        &mut self,
        _index: &DynamicIndex,
        root: Self::Root,
        _returned_widget: &adw::PreferencesGroup,
        _sender: FactorySender<Self>,
    ) -> Self::Widgets {
        root.set_title(&gtk::glib::markup_escape_text(&self.group.title));
        root.set_description(Some(&gtk::glib::markup_escape_text(&describe(&self.group))));
        if !self.group.problems.is_empty() {
            root.add(&problems_row(&self.group.problems));
        }
    }

    fn update(&mut self, message: Self::Input, _sender: FactorySender<Self>) {
        match message {
            GroupInput::State { run, busy } => {
                let blocked = busy || !self.group.installable();
                self.rows.broadcast(RowInput::State { run, blocked });
            }
        }
    }
}

/// "USB drive · 3 updates · 260.8 MB"
fn describe(group: &SourceGroup) -> String {
    // "Computers nearby" and "Internet" are titles that already say what they are.
    let mut parts = match group.kind {
        SourceKind::Drive => vec![tr("USB drive")],
        SourceKind::Lan | SourceKind::Upstream => Vec::new(),
    };
    if group
        .drive
        .as_ref()
        .is_some_and(|drive| drive.installing_by_system)
    {
        parts.push(tr("The system is installing from this drive"));
    }
    if !group.updates.is_empty() {
        let count = group.shown().len() as u64;
        parts.push(ntrf("{n} update", "{n} updates", count, &[]));
        let bytes: u64 = group
            .updates
            .iter()
            .map(|update| update.download_size)
            .sum();
        if bytes > 0 {
            parts.push(format::size(bytes));
        }
    }
    parts.join(" · ")
}

/// The problems of a source, folded away below the updates that can be installed.
fn problems_row(problems: &[Problem]) -> adw::ExpanderRow {
    let expander = adw::ExpanderRow::builder()
        .title(gtk::glib::markup_escape_text(&ntrf(
            "{n} update cannot be installed",
            "{n} updates cannot be installed",
            problems.len() as u64,
            &[],
        )))
        .subtitle(tr("Ferry checked them and found problems"))
        .expanded(false)
        .build();
    let icon = gtk::Image::builder()
        .icon_name("dialog-warning-symbolic")
        .css_classes(["warning"])
        .build();
    expander.add_prefix(&icon);
    for problem in problems {
        expander.add_row(&problem_row(problem));
    }
    expander
}

/// One problem: the reason a person can act on, and what it is about.
pub fn problem_row(problem: &Problem) -> adw::ActionRow {
    let about = crate::format::problem_subject(problem);
    adw::ActionRow::builder()
        .title(gtk::glib::markup_escape_text(&problem.reason))
        .title_lines(0)
        .subtitle(gtk::glib::markup_escape_text(&about))
        .subtitle_lines(1)
        .build()
}
