//! Test hook, active only when `$FERRY_TEST_DUMP_DIR` is set: after every painted frame that
//! looks different, the window writes `frame-N.txt` (the mapped widget tree: rows, labels,
//! buttons and whether they are sensitive) and `frame-N.png` (the window as GTK rendered it),
//! then `latest` (holding N). UI tests wait on these instead of sleeping.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::rc::Rc;

use relm4::adw::prelude::*;
use relm4::gtk::{gdk, glib, graphene};
use relm4::{adw, gtk};

struct Dumper {
    dir: PathBuf,
    last: RefCell<String>,
    sequence: Cell<u32>,
    clock: RefCell<Option<gdk::FrameClock>>,
}

pub fn install(window: &impl IsA<gtk::Window>, dir: PathBuf) {
    let window: &gtk::Window = window.upcast_ref();
    if let Err(error) = fs::create_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), %error, "cannot create the test dump dir");
        return;
    }
    let dumper = Rc::new(Dumper {
        dir,
        last: RefCell::new(String::new()),
        sequence: Cell::new(0),
        clock: RefCell::new(None),
    });
    window.connect_map(move |window| {
        let Some(clock) = window.frame_clock() else {
            return;
        };
        if dumper.clock.borrow().as_ref() == Some(&clock) {
            return;
        }
        let weak = window.downgrade();
        let for_paint = dumper.clone();
        clock.connect_after_paint(move |_| {
            if let Some(window) = weak.upgrade() {
                for_paint.dump(&window);
            }
        });
        dumper.clock.replace(Some(clock));
    });
}

impl Dumper {
    fn dump(&self, window: &gtk::Window) {
        let mut tree = String::new();
        describe(window.upcast_ref(), 0, &mut tree);
        if *self.last.borrow() == tree {
            return;
        }
        let sequence = self.sequence.get() + 1;
        self.sequence.set(sequence);
        let png = self.dir.join(format!("frame-{sequence}.png"));
        if let Err(error) = render_png(window, &png) {
            tracing::warn!(%error, "cannot render the window for the test dump");
        }
        let text = format!("frame {sequence}\n{tree}");
        let written = fs::write(self.dir.join(format!("frame-{sequence}.txt")), text)
            .and_then(|()| fs::write(self.dir.join(".latest"), sequence.to_string()))
            .and_then(|()| fs::rename(self.dir.join(".latest"), self.dir.join("latest")));
        if let Err(error) = written {
            tracing::warn!(%error, "cannot write the test dump");
        }
        self.last.replace(tree);
    }
}

fn render_png(window: &gtk::Window, path: &std::path::Path) -> Result<(), glib::BoolError> {
    let (width, height) = (window.width(), window.height());
    let paintable = gtk::WidgetPaintable::new(Some(window));
    let snapshot = gtk::Snapshot::new();
    paintable.snapshot(&snapshot, f64::from(width), f64::from(height));
    let node = snapshot
        .to_node()
        .ok_or_else(|| glib::bool_error!("the window drew nothing"))?;
    let renderer = window
        .renderer()
        .ok_or_else(|| glib::bool_error!("the window has no renderer"))?;
    let bounds = graphene::Rect::new(0.0, 0.0, width as f32, height as f32);
    renderer
        .render_texture(&node, Some(&bounds))
        .save_to_png(path)
}

/// One line per mapped widget worth asserting on, indented by depth.
fn describe(widget: &gtk::Widget, depth: usize, out: &mut String) {
    if !widget.is_mapped() {
        return;
    }
    let line = if let Some(page) = widget.downcast_ref::<adw::StatusPage>() {
        Some(format!(
            "StatusPage title={} description={}",
            quote(page.title().as_str()),
            quote(page.description().unwrap_or_default().as_str())
        ))
    } else if let Some(row) = widget.downcast_ref::<adw::ActionRow>() {
        Some(format!(
            "Row title={} subtitle={}",
            quote(row.title().as_str()),
            quote(row.subtitle().unwrap_or_default().as_str())
        ))
    } else if let Some(row) = widget.downcast_ref::<adw::ExpanderRow>() {
        Some(format!(
            "ExpanderRow title={} expanded={}",
            quote(row.title().as_str()),
            row.is_expanded()
        ))
    } else if let Some(group) = widget.downcast_ref::<adw::PreferencesGroup>() {
        Some(format!(
            "Group title={} description={}",
            quote(group.title().as_str()),
            quote(group.description().unwrap_or_default().as_str())
        ))
    } else if let Some(title) = widget.downcast_ref::<adw::WindowTitle>() {
        Some(format!("WindowTitle {}", quote(title.title().as_str())))
    } else if let Some(menu) = widget.downcast_ref::<gtk::MenuButton>() {
        Some(format!(
            "MenuButton {} sensitive={}",
            quote(menu.label().unwrap_or_default().as_str()),
            menu.is_sensitive()
        ))
    } else if let Some(button) = widget.downcast_ref::<gtk::Button>() {
        Some(format!(
            "Button {} sensitive={}",
            quote(button.label().unwrap_or_default().as_str()),
            button.is_sensitive()
        ))
    } else if let Some(switch) = widget.downcast_ref::<gtk::Switch>() {
        Some(format!(
            "Switch active={} sensitive={}",
            switch.is_active(),
            switch.is_sensitive()
        ))
    } else if let Some(check) = widget.downcast_ref::<gtk::CheckButton>() {
        Some(format!("Check active={}", check.is_active()))
    } else if let Some(bar) = widget.downcast_ref::<gtk::ProgressBar>() {
        Some(format!(
            "ProgressBar fraction={:.3} size={}x{}",
            bar.fraction(),
            bar.width(),
            bar.height()
        ))
    } else if let Some(label) = widget.downcast_ref::<gtk::Label>() {
        Some(format!("Label {}", quote(label.label().as_str())))
    } else if let Some(image) = widget.downcast_ref::<gtk::Image>() {
        image
            .icon_name()
            .map(|name| format!("Image icon={}", quote(name.as_str())))
    } else {
        None
    };
    let child_depth = match line {
        Some(line) => {
            let _ = writeln!(out, "{:indent$}{line}", "", indent = depth * 2);
            depth + 1
        }
        None => depth,
    };
    let mut child = widget.first_child();
    while let Some(current) = child {
        describe(&current, child_depth, out);
        child = current.next_sibling();
    }
}

/// A string in double quotes, with only quotes, backslashes and newlines escaped, so the
/// tree reads as the window shows it.
fn quote(text: &str) -> String {
    format!(
        "\"{}\"",
        text.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}
