//! End-to-end tests of the `confseg` command-line tool.
