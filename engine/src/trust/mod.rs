//! Trust: keys from the local machine, signature checks, bindings and anti-downgrade.
