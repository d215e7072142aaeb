"""The Amplitude-style org backend of the sandbox: SCIM (/scim/1) and the admin API (/admin/v1)."""
