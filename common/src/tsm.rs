//! Time-scale modification by whole pitch periods (work in progress on branch `tsm`).
