//! Accessible labels for widgets whose visible text is not enough ("Install" → "Install
//! GNOME Text Editor"). GTK has had `gtk_accessible_update_property_value` and
//! `gtk_accessible_reset_relation` since 4.0, but gtk4-rs only binds them from 4.10 on, above
//! what Ferry requires; so they are declared here, which is why this module allows unsafe code.

#![allow(unsafe_code)]

use std::ffi::c_int;

use relm4::gtk;
use relm4::gtk::glib;
use relm4::gtk::glib::translate::ToGlibPtr;
use relm4::gtk::prelude::*;

unsafe extern "C" {
    fn gtk_accessible_update_property_value(
        accessible: *mut gtk::ffi::GtkAccessible,
        n_properties: c_int,
        properties: *mut gtk::ffi::GtkAccessibleProperty,
        values: *const glib::gobject_ffi::GValue,
    );
    fn gtk_accessible_reset_relation(
        accessible: *mut gtk::ffi::GtkAccessible,
        relation: gtk::ffi::GtkAccessibleRelation,
    );
}

/// Sets the name screen readers announce for `widget`. A button's own label is its
/// "labelled by" relation, which outranks the label property in GTK's name computation, so
/// the relation goes; `gtk_button_set_label` adds it again, so call this after that.
pub fn set_label(widget: &impl IsA<gtk::Widget>, label: &str) {
    let mut properties = [gtk::ffi::GTK_ACCESSIBLE_PROPERTY_LABEL];
    let value = label.to_value();
    let widget: &gtk::Widget = widget.upcast_ref();
    let widget_ptr: *mut gtk::ffi::GtkWidget = widget.to_glib_none().0;
    // SAFETY: every GtkWidget implements the GtkAccessible interface; one property with one
    // string value, as the C API documents; GTK copies the value before returning.
    unsafe {
        gtk_accessible_update_property_value(
            widget_ptr.cast(),
            1,
            properties.as_mut_ptr(),
            value.to_glib_none().0,
        );
        // SAFETY: as above; resetting a relation that is not set does nothing.
        gtk_accessible_reset_relation(
            widget_ptr.cast(),
            gtk::ffi::GTK_ACCESSIBLE_RELATION_LABELLED_BY,
        );
    }
}

/// Sets a button's visible label and the longer name screen readers announce for it, which
/// follows from the visible one. Only on a change: GTK signals every update of the name, and a
/// screen reader reads a focused button's name again on each.
pub fn set_button_label(button: &gtk::Button, visible: &str, announced: &str) {
    if button.label().as_deref() == Some(visible) {
        return;
    }
    button.set_label(visible);
    set_label(button, announced);
}

/// Names a menu button for screen readers. Keyboard focus goes to the toggle button inside
/// it, which is named after its own label, so that one gets the name as well.
pub fn set_menu_button_label(menu_button: &gtk::MenuButton, label: &str) {
    set_label(menu_button, label);
    let mut child = menu_button.first_child();
    while let Some(widget) = child {
        if widget.is::<gtk::ToggleButton>() {
            set_label(&widget, label);
        }
        child = widget.next_sibling();
    }
}
