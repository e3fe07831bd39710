// The translation unit that carries the test suites' precompiled header.
