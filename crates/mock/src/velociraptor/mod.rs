//! Velociraptor server emulator.
