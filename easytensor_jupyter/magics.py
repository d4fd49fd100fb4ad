"""The notebook front door: ``%%easytensor_model`` and its line magics.

User mistakes (a bad argument, an uncapturable global, a failed check) surface as IPython's
``UsageError`` so the notebook shows one plain message instead of a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from easytensor_jupyter.provenance import cell_provenance
from easytensor_jupyter.summary import DeploySummary
from easytensor_jupyter.token_keeper import TokenKeeper, notebook_token

__all__ = ["EasyTensorMagics", "last_deployment", "load_magics", "unload_magics"]

_deployments: list[DeploySummary] = []


def last_deployment() -> DeploySummary | None:
    """The most recent deploy in this kernel: ``.model_id``, ``.version``, ``.endpoint``, ``.token``."""
    return _deployments[-1] if _deployments else None


@dataclass
class PendingCapture:
    """A class captured without an instance, waiting for ``%easytensor_deploy``."""

    name: str | None
    captured: Any
    provenance: dict[str, Any]
    requirements: list[str]
    cell: str = ""
    class_name: str | None = None


def parse_line(magic: Any, line: str) -> Any:
    """Parse with POSIX quoting, so "News classifier" and --init '{"a": 1}' arrive unquoted.

    IPython's own ``parse_argstring`` splits without POSIX rules and keeps the quotes.
    """
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"Cannot parse the arguments ({exc}): {line}") from None
    return magic.parser.parse_args(argv)


@contextlib.contextmanager
def _record_classes_as_defined(recorder: Any) -> Iterator[None]:
    """Wrap model classes the moment they are created, so an instance built later in the same
    cell (``clf = Model(hidden=8)`` under the class) has its constructor arguments recorded."""
    import torch

    module_cls = torch.nn.Module
    previous = module_cls.__dict__.get("__init_subclass__")

    def hook(cls: type[torch.nn.Module], /, **kwargs: Any) -> None:
        super(module_cls, cls).__init_subclass__(**kwargs)
        recorder.scan({cls.__name__: cls})

    module_cls.__init_subclass__ = classmethod(hook)  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        if previous is None:
            del module_cls.__init_subclass__
        else:
            module_cls.__init_subclass__ = previous  # type: ignore[method-assign]


def _parse_init(raw: str | None) -> Any:
    if raw is None:
        return None
    from easytensor_jupyter.packaging import InitArgs

    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"--init is not valid JSON ({exc.msg} at column {exc.colno}): {raw}"
        ) from None
    if isinstance(value, dict):
        return InitArgs(kwargs=value)
    if isinstance(value, list):
        return InitArgs(args=value)
    raise UsageError(
        "--init must be a JSON object of keyword arguments (or a list of positional ones)"
    )


@magics_class
class EasyTensorMagics(Magics):
    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)
        self.ip = shell
        from easytensor_jupyter.capture import ConstructionRecorder

        self.recorder = ConstructionRecorder()
        self.recorder.install(shell)
        self.pending: dict[str, PendingCapture] = {}
        self.url: str | None = None
        self._client: Any = None
        self.tokens = TokenKeeper()
        from easytensor_jupyter.drift_watch import DriftWatch

        self.watch = DriftWatch(self)
        shell.events.register("post_run_cell", self.watch.after_cell)

    # -- connection -------------------------------------------------------------------------
    def client(self) -> Any:
        from easytensor_jupyter.client import Client

        if self._client is None:
            self._client = Client.connect(self.url, announce=print)
        return self._client

    # -- %%easytensor_model -----------------------------------------------------------------
    @magic_arguments()
    @argument("name", nargs="?", help="model name (default: the class name)")
    @argument("--instance", "-i", help="the live model to deploy, e.g. clf")
    @argument("--sample", "-s", help="a Python expression for the parity-check input")
    @argument("--requirements", "-r", nargs="*", default=[], help="pip requirements to record")
    @argument("--init", help="constructor arguments as JSON, e.g. '{\"hidden\": 8}'")
    @argument("--class", dest="class_name", help="which class, when the cell defines several")
    @argument("--force", action="store_true", help="make a new version even if nothing changed")
    @argument(
        "--candidate",
        action="store_true",
        help="deploy a version that takes no traffic (the default stays), to compare or canary",
    )
    @argument("--no-panel", action="store_true", help="print a summary instead of the query panel")
    @cell_magic
    def easytensor_model(self, line: str, cell: str) -> DeploySummary | None:
        """Run the cell, capture its model class, and deploy the live instance if one is named."""
        args = parse_line(self.easytensor_model, line)
        with _record_classes_as_defined(self.recorder):
            result = self.ip.run_cell(cell, store_history=False)
        if not result.success:
            return None
        self.recorder.scan(self.ip.user_ns)
        captured = self._capture(cell, args.class_name)
        provenance = cell_provenance(self.ip, cell)
        pending = PendingCapture(
            args.name, captured, provenance, args.requirements, cell, args.class_name
        )
        if args.instance is None:
            self.pending[captured.class_name] = pending
            self.watch.recaptured(pending)
            for warning in captured.warnings:
                print(f"Warning: {warning}")
            print(
                f"Captured {captured.class_name}. Build and train it, then deploy with "
                f"%easytensor_deploy VAR{' --name ' + repr(args.name) if args.name else ''}"
            )
            return None
        instance = self._lookup(args.instance)
        return self._deploy(
            instance,
            pending,
            init=_parse_init(args.init),
            sample_expr=args.sample,
            force=args.force,
            panel=not args.no_panel,
            var=args.instance,
            candidate=args.candidate,
        )

    def _capture(self, cell: str, class_name: str | None, state: Any = None) -> Any:
        from easytensor_jupyter.capture import CaptureError, capture_model, history_from_shell

        try:
            return capture_model(
                cell,
                history_from_shell(self.ip, self.recorder.cell_ids),
                self.ip.user_ns,
                class_name=class_name,
                state=state,
            )
        except CaptureError as exc:
            raise UsageError(f"Cannot capture the model: {exc}") from None

    def _lookup(self, var: str) -> Any:
        import torch

        if var not in self.ip.user_ns:
            raise UsageError(
                f"There is no variable {var!r} in this notebook. Build the model first, e.g. {var} = MyModel()."
            )
        instance = self.ip.user_ns[var]
        if not isinstance(instance, torch.nn.Module):
            raise UsageError(
                f"{var} is a {type(instance).__name__}, not a torch.nn.Module instance"
            )
        return instance

    def _sample(self, instance: Any, expr: str | None) -> Any:
        from easytensor_jupyter.packaging import NO_SAMPLE

        if expr is not None:
            try:
                return eval(expr, self.ip.user_ns)
            except Exception as exc:
                raise UsageError(f"--sample {expr!r} failed: {type(exc).__name__}: {exc}") from None
        recorded, value = self.recorder.last_input(instance)
        return value if recorded else NO_SAMPLE

    def _init_args(self, instance: Any, explicit: Any) -> Any:
        from easytensor_jupyter.packaging import InitArgs

        if explicit is not None:
            return explicit
        recorded = self.recorder.init_args(instance)
        if recorded is None:
            return None
        return InitArgs(list(recorded.args), dict(recorded.kwargs))

    def _deploy(
        self,
        instance: Any,
        pending: PendingCapture,
        *,
        init: Any,
        sample_expr: str | None,
        force: bool,
        panel: bool,
        var: str | None = None,
        candidate: bool = False,
    ) -> DeploySummary | None:
        from easytensor_jupyter.client import EasyTensorError
        from easytensor_jupyter.packaging import PublishRequest, publish
        from easytensor_jupyter.progress import byte_progress
        from easytensor_jupyter.validate import ModelCheckError

        class_name = pending.captured.class_name
        if type(instance).__name__ != class_name:
            raise UsageError(
                f"The instance is a {type(instance).__name__}, but the cell defines {class_name}. "
                f"Pass an instance of {class_name}."
            )
        captured, init_args, notes = self._capture_with_instance(instance, pending, init)
        request = PublishRequest(
            name=pending.name or captured.class_name,
            model=instance,
            source=captured.source,
            init=init_args,
            sample=self._sample(instance, sample_expr),
            requirements=pending.requirements,
            constants=captured.constants,
            provenance=pending.provenance,
            created_by="%%easytensor_model",
            state=captured.state,
            instance_captured=True,
            local_modules=captured.local_modules,
            notes=notes,
        )
        from easytensor_jupyter import headless

        if headless.dry_run_dir() is not None:
            try:
                headless.write_dry_run(request)
            except ModelCheckError as exc:
                raise UsageError(f"Nothing was written. {exc}") from None
            return None
        try:
            client = self.client()
            result = publish(
                request,
                client,
                create_token=False,
                force=force,
                progress=byte_progress,
                on_step=print,
                candidate=candidate,
            )
        except (ModelCheckError, EasyTensorError) as exc:
            raise UsageError(f"Nothing was uploaded. {exc}") from None
        token, reused = notebook_token(self.tokens, client, result, self.ip)
        summary = DeploySummary.from_upload(
            result,
            client.endpoint(result.id),
            request.sample,
            model=instance,
            token=token,
            token_reused=reused,
            token_kept=token is not None,
        )
        print(summary.text())
        if candidate and not result.unchanged:
            print(
                f"Version {result.version} is a candidate: it takes no traffic until you promote "
                f"it or give it a share. Compare it: easytensor_jupyter.compare({result.id!r}, "
                f"a=DEFAULT, b={result.version})"
            )
        _deployments.append(summary)
        self.watch.track(result.id, result.name, var, pending, init)
        headless.record_upload(result, client.endpoint(result.id), request.provenance)
        if panel:
            self._show_panel(result.id, token)
        return summary

    def _capture_with_instance(
        self, instance: Any, pending: PendingCapture, init: Any
    ) -> tuple[Any, Any, list[str]]:
        """Capture the class again, now with what the instance carries beyond its weights
        (objects passed to its constructor, attributes set after it), so the classes those
        values need are captured too."""
        from easytensor_jupyter.capture import new_state_writer
        from easytensor_jupyter.instance_state import InstanceStateError, capture_instance
        from easytensor_jupyter.packaging import resolve_init_args
        from easytensor_jupyter.validate import ModelCheckError

        try:
            init_args = resolve_init_args(instance, self._init_args(instance, init))
            state = new_state_writer()
            report = capture_instance(instance, init_args.args, init_args.kwargs, state)
        except (ModelCheckError, InstanceStateError) as exc:
            raise UsageError(f"Nothing was uploaded. {exc}") from None
        captured = (
            self._capture(pending.cell, pending.class_name, state)
            if pending.cell
            else pending.captured
        )
        warnings = [f"Warning: {w}" for w in captured.warnings]
        return captured, init_args, [*warnings, *report.notes()]

    def _show_panel(self, model_id: str, token: str | None) -> None:
        try:
            from easytensor_jupyter.widgets import QueryPanel
        except ImportError:
            return
        panel = QueryPanel(model_id, client=self.client(), token=token)
        self.watch.attach(panel)
        display(panel)

    # -- line magics ------------------------------------------------------------------------
    @magic_arguments()
    @argument("var", help="the live model to deploy")
    @argument(
        "--name",
        "-n",
        help="model name (default: the name given to the capture, else the class name)",
    )
    @argument("--sample", "-s", help="a Python expression for the parity-check input")
    @argument("--init", help="constructor arguments as JSON")
    @argument("--force", action="store_true")
    @argument("--candidate", action="store_true", help="a version that takes no traffic")
    @argument("--no-panel", action="store_true")
    @line_magic
    def easytensor_deploy(self, line: str) -> DeploySummary | None:
        """Deploy an instance of a class captured earlier by ``%%easytensor_model`` without --instance."""
        args = parse_line(self.easytensor_deploy, line)
        instance = self._lookup(args.var)
        class_name = type(instance).__name__
        pending = self.pending.get(class_name)
        if pending is None:
            known = ", ".join(sorted(self.pending)) or "none yet"
            raise UsageError(
                f"No captured class {class_name} (captured: {known}). Run its cell with %%easytensor_model first."
            )
        if args.name:
            pending = dataclasses.replace(pending, name=args.name)
        return self._deploy(
            instance,
            pending,
            init=_parse_init(args.init),
            sample_expr=args.sample,
            force=args.force,
            candidate=args.candidate,
            panel=not args.no_panel,
            var=args.var,
        )

    def close(self) -> None:
        self.recorder.uninstall()
        self.watch.close()
        with contextlib.suppress(ValueError):
            self.ip.events.unregister("post_run_cell", self.watch.after_cell)


def load_magics(shell: InteractiveShell) -> None:
    if any(isinstance(m, EasyTensorMagics) for m in shell.magics_manager.registry.values()):
        return
    from easytensor_jupyter.server_magics import ServerMagics

    main = EasyTensorMagics(shell)
    shell.register_magics(main)
    shell.register_magics(ServerMagics(shell, main))


def unload_magics(shell: InteractiveShell) -> None:
    for magics in list(shell.magics_manager.registry.values()):
        if isinstance(magics, EasyTensorMagics):
            magics.close()
