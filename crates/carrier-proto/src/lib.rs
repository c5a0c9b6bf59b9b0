//! Sans-IO protocol core of Carrier (work in progress).
