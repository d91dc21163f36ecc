-- Second warehouse database next to psa_warehouse in the compose "warehouse" service.
CREATE DATABASE accounting_warehouse;
