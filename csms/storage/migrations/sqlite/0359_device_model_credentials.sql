-- The values of credentials a station's device model kept in clear before they were left
-- out (csms.service.device_model.is_secret_name): a 2.0.1 BasicAuthPassword a station
-- reported or read back, or the one an operator set with set-variables, as good as the
-- station's login to whoever could read the model. The rows stay, without a value.
UPDATE device_variables SET value = NULL
WHERE value IS NOT NULL AND (lower(var_key) LIKE '%password%'
    OR lower(var_key) LIKE '%passphrase%' OR lower(var_key) LIKE '%secret%'
    OR lower(var_key) LIKE '%authorizationkey%');
