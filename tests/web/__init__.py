"""Browser tests of the admin web page."""
