"""Hardware-in-the-loop rig: scenarios, fault injection, fleet simulator, reports."""
