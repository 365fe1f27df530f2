-- Several NAS entries may share an address (routers behind one NAT address)
-- when each has its own identifier: the router's NAS-Identifier, i.e. its
-- RouterOS `/system identity`. A packet from a shared address is matched by it.
ALTER TABLE nas ADD COLUMN identifier TEXT;
CREATE INDEX nas_address ON nas (address);
