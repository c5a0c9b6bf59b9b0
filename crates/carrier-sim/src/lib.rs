//! Seeded sans-IO network link emulator for Carrier (work in progress).
