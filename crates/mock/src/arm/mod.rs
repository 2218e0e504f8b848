//! Azure Resource Manager emulator.
