"""What one harvested source is: a daemon family, the files of its unpacked source
package that are read, its log calls and how their level and category are read
(the registry of all of them is :data:`nanomodel.harvest.sources.SOURCES`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Source:
    source: str
    package: str  # Debian source package name (its directory is <package>-<upstream version>)
    include: tuple[str, ...]  # globs relative to the unpacked source
    calls: str  # regex of call names (fullmatch)
    alert: str  # default category of an error-level message
    java: bool = False
    exclude: tuple[str, ...] = ("test", "/tests/", "fuzz", "example", "contrib/")
    # call-name regex → literal prefix the logging function adds ("%{unit}: " etc.)
    prefixes: dict[str, str] = field(default_factory=dict)
    # path prefix → default category of failures in that part of the tree (first match wins);
    # it replaces the subject hints, e.g. every failing hwmon driver read is a sensor fault.
    path_alert: tuple[tuple[str, str], ...] = ()
    # messages kept in tables ({LOG_CRIT, "Power failure."}) rather than in calls
    tables: bool = False
    # call-name regex of calls whose logging macro writes the calling C function's name
    # first (opensm's OSM_LOG adds "__func__: "); the harvest writes the real name
    func_prefix: str = ""
    # a format starting "%s: " whose argument is __func__ (Slurm's error("%s: ...", __func__))
    # is written with the calling function's name, as the log shows it
    func_arg: bool = False
    # regex (fullmatch) of level arguments that name a debug facility for this source
    # (nfs-utils' xlog(D_GENERAL, ...)): such calls are dropped like debug output
    debug_words: str = ""
    # argument index of the format when an earlier argument may be a literal too
    # (xinetd's msg(LOG_ERR, "tcpmux_handler", "read failed") names its function first)
    format_index: int | None = None
    # regex (fullmatch) of a call name or of a level argument → the level it always means
    # where the name does not say (autofs's logmsg()/logerr() log at LOG_CRIT, gpm's
    # GPM_PR_OOPS at LOG_ERR before it exits)
    call_levels: dict[str, str] = field(default_factory=dict)

    def alert_for(self, rel_path: str) -> tuple[str, bool]:
        """(default category, whether it came from the path) for a file of this source."""
        for prefix, category in self.path_alert:
            if rel_path.startswith(prefix):
                return category, True
        return self.alert, False
