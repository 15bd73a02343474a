-- Prosody in the compose federation (bridges profile); NOT for production.
interfaces = { "0.0.0.0" }
component_interfaces = { "0.0.0.0" }
modules_enabled = { "disco"; "roster"; "saslauth"; "ping"; }
modules_disabled = { "s2s" }
authentication = "internal_hashed"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
VirtualHost "xmpp.test"
Component "mimi.xmpp.test"
  component_secret = "mimi_component_secret"
