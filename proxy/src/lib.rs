//! Remora proxy.
