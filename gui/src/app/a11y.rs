//! Accessible labels for widgets whose visible text is not enough ("Install" → "Install
//! GNOME Text Editor"). GTK has had `gtk_accessible_update_property_value` since 4.0, but
//! gtk4-rs only binds it from 4.10 on, above what Ferry requires; so it is declared here,
//! which is why this module allows unsafe code.

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
}

/// Sets the name screen readers announce for `widget`.
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
    }
}
