//! Where objects come from: drives now, LAN peers and upstream later, behind one trait.
