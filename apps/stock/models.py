# Models for this app arrive with the issues that need them.
