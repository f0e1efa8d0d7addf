<#
.SYNOPSIS
    DemoFusion Studio installer for Windows.

.DESCRIPTION
    Creates a private Python environment under %LOCALAPPDATA%\DemoFusionStudio\env, installs the torch
    build that fits this PC (CUDA when an NVIDIA GPU answers nvidia-smi, CPU otherwise), the pinned
    dependencies from packaging\locks\windows.txt and the app from the folder this script lives in,
    then adds Start-menu and desktop shortcuts. Nothing is installed for other users and no
    administrator rights are needed.

    powershell -ExecutionPolicy Bypass -File packaging\install.ps1              # install or repair
    powershell -ExecutionPolicy Bypass -File packaging\install.ps1 -Update      # reinstall the app
    powershell -ExecutionPolicy Bypass -File packaging\install.ps1 -Uninstall   # remove it again

.PARAMETER Prefix
    Where the private environment goes (the environment is Prefix\env).
.PARAMETER Python
    The Python (3.11 or newer) to build the environment from; default: uv's own Python when uv is
    installed, else the newest one the py launcher knows, else python.exe on PATH.
.PARAMETER Cpu
    Install the CPU build of torch even if an NVIDIA GPU is present.
.PARAMETER Cuda
    Install the CUDA build of torch even if nvidia-smi finds no GPU.
.PARAMETER CudaIndex
    The wheel index for the CUDA build.
.PARAMETER TorchSpec
    Install torch with exactly these pip arguments instead, from the configured package indexes.
.PARAMETER NoUv
    Use python -m venv and pip even when uv is installed.
.PARAMETER NoDesktop
    Skip the Start-menu and desktop shortcuts.
.PARAMETER Update
    Reinstall the app (and refresh pinned dependencies) in the existing environment.
.PARAMETER Uninstall
    Remove the environment and the shortcuts.
.PARAMETER Purge
    With -Uninstall: also delete settings, presets, caches and logs (pictures are never deleted).
#>
[CmdletBinding()]
param(
    [string]$Prefix = (Join-Path $env:LOCALAPPDATA "DemoFusionStudio"),
    [string]$Python = "",
    [switch]$Cpu,
    [switch]$Cuda,
    [string]$CudaIndex = "https://download.pytorch.org/whl/cu128",
    [string]$TorchSpec = "",
    [switch]$NoUv,
    [switch]$NoDesktop,
    [switch]$Update,
    [switch]$Uninstall,
    [switch]$Purge
)

Set-StrictMode -Version Latest
$ErrorActionPreference = "Stop"

$AppName = "DemoFusion Studio"
$AppId = "demofusion-studio"
$AppUserModelId = "DemoFusion.Studio"  # the id the app gives itself (gui/desktop/platform_integration.py)
$TorchVersion = "2.13.0"
$CpuIndex = "https://download.pytorch.org/whl/cpu"
$MinMinor = 11

$ScriptDir = Split-Path -Parent $MyInvocation.MyCommand.Path
$RepoRoot = Split-Path -Parent $ScriptDir
$LockFile = Join-Path $ScriptDir "locks\windows.txt"
$EnvDir = Join-Path $Prefix "env"
$EnvPython = Join-Path $EnvDir "Scripts\python.exe"
$EnvPythonW = Join-Path $EnvDir "Scripts\pythonw.exe"
$AppExe = Join-Path $EnvDir "Scripts\demofusion-app.exe"
$IconFile = Join-Path $Prefix "$AppId.ico"
$StartMenuLink = Join-Path ([Environment]::GetFolderPath("Programs")) "$AppName.lnk"
$DesktopLink = Join-Path ([Environment]::GetFolderPath("Desktop")) "$AppName.lnk"

function Say([string]$Message) { Write-Host "==> $Message" }
function Fail([string]$Message) { Write-Host "error: $Message" -ForegroundColor Red; exit 1 }

# Run a native program and stop on a non-zero exit code (native failures do not throw on their own).
function Invoke-Checked([string]$Exe, [string[]]$Arguments) {
    & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) { Fail "'$Exe $($Arguments -join ' ')' failed (exit code $LASTEXITCODE)." }
}

function Test-Uv { return (-not $NoUv) -and [bool](Get-Command uv -ErrorAction SilentlyContinue) }

function Install-Packages([string[]]$Arguments) {
    if (Test-Uv) {
        Invoke-Checked "uv" (@("pip", "install", "--python", $EnvPython) + $Arguments)
    } else {
        Invoke-Checked $EnvPython (@("-m", "pip", "install", "--disable-pip-version-check") + $Arguments)
    }
}

function Test-PythonOk([string]$Exe, [string[]]$Pre = @()) {
    try {
        & $Exe @Pre -c "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, $MinMinor))" 2>$null
        return $LASTEXITCODE -eq 0
    } catch { return $false }
}

function Find-Python {
    # The py launcher knows every python.org install; newest first.
    if (Get-Command py -ErrorAction SilentlyContinue) {
        foreach ($minor in 13, 12, 11) {
            if (Test-PythonOk "py" @("-3.$minor")) {
                return (& py "-3.$minor" -c "import sys; print(sys.executable)").Trim()
            }
        }
    }
    $onPath = Get-Command python -ErrorAction SilentlyContinue
    # The Microsoft Store stub in WindowsApps opens the Store instead of running; skip it.
    if ($onPath -and $onPath.Source -notlike "*WindowsApps*" -and (Test-PythonOk $onPath.Source)) {
        return $onPath.Source
    }
    return $null
}

function New-Environment {
    if (Test-Path $EnvPython) { Say "Reusing the environment in $EnvDir"; return }
    New-Item -ItemType Directory -Force -Path $Prefix | Out-Null
    if (Test-Uv) {
        $request = if ($Python) { $Python } else { "3.12" }
        Say "Creating the environment with uv (Python $request) in $EnvDir"
        Invoke-Checked "uv" @("venv", "--python", $request, $EnvDir)
        return
    }
    $base = $Python
    if (-not $base) { $base = Find-Python }
    if (-not $base -or -not (Test-PythonOk $base)) {
        Fail ("No Python 3.$MinMinor or newer was found. Install Python 3.12 from python.org " +
            "(tick 'Add python.exe to PATH'), or install uv, or pass -Python C:\path\to\python.exe.")
    }
    Say "Creating the environment with $base in $EnvDir"
    Invoke-Checked $base @("-m", "venv", $EnvDir)
}

function Get-GpuName {
    $smi = Get-Command nvidia-smi -ErrorAction SilentlyContinue
    if (-not $smi) { return $null }
    try {
        $name = & $smi.Source "--query-gpu=name" "--format=csv,noheader" 2>$null | Select-Object -First 1
        if ($LASTEXITCODE -eq 0 -and $name) { return $name.Trim() }
    } catch { }
    return $null
}

function Install-Torch {
    if ($TorchSpec) {
        Say "Installing torch as asked: $TorchSpec"
        Install-Packages ($TorchSpec -split "\s+" | Where-Object { $_ })
        return
    }
    $mode = if ($Cpu) { "cpu" } elseif ($Cuda) { "cuda" } else { "auto" }
    if ($mode -eq "auto") {
        $gpu = Get-GpuName
        if ($gpu) { $mode = "cuda"; Say "Found an NVIDIA GPU: $gpu" }
        else { $mode = "cpu"; Say "No NVIDIA GPU answered nvidia-smi; installing the CPU build (slow)" }
    }
    if ($mode -eq "cuda") {
        Say "Installing torch $TorchVersion with CUDA from $CudaIndex (about 3 GB)"
        Install-Packages @("torch==$TorchVersion", "--index-url", $CudaIndex)
    } else {
        Say "Installing torch $TorchVersion, CPU build"
        Install-Packages @("torch==$TorchVersion", "--index-url", $CpuIndex)
    }
}

function Install-Dependencies {
    if (-not (Test-Path $LockFile)) { Fail "The lock file $LockFile is missing; get a complete copy of the app." }
    Say "Installing the pinned dependencies from $LockFile"
    Install-Packages @("-r", $LockFile)
}

function Install-App {
    # Build from a clean copy so the source folder gets no build\ or egg-info folders.
    $stage = Join-Path ([IO.Path]::GetTempPath()) ("dfs-build-" + [guid]::NewGuid().ToString("N"))
    New-Item -ItemType Directory -Path $stage | Out-Null
    try {
        $items = @("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in", "README.md", "LICENSE",
            "demofusion_app", "resources")
        foreach ($item in $items) {
            $source = Join-Path $RepoRoot $item
            if (Test-Path $source) { Copy-Item -Recurse -Path $source -Destination $stage }
        }
        if (-not (Test-Path (Join-Path $stage "pyproject.toml"))) {
            Fail "$RepoRoot is not the app's source folder (no pyproject.toml)."
        }
        Get-ChildItem -Path $stage -Recurse -Directory -Filter "__pycache__" | Remove-Item -Recurse -Force
        Say "Installing $AppName from $RepoRoot"
        Install-Packages @("--no-deps", "--force-reinstall", $stage)
    } finally {
        Remove-Item -Recurse -Force -Path $stage -ErrorAction SilentlyContinue
    }
}

function Test-App {
    $version = & $AppExe --version
    if ($LASTEXITCODE -ne 0) { Fail "The installed app does not start; see the messages above." }
    Say "Installed: $version"
}

# The shortcut must carry the AppUserModelID the running app gives itself, or Windows shows the window
# as a separate taskbar button beside a pinned shortcut. WScript.Shell cannot set it; the shell's
# property store can.
$ShortcutIdCode = @"
using System;
using System.Runtime.InteropServices;

namespace DemoFusionStudioInstaller {
    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    public struct PropertyKey {
        public Guid FormatId;
        public uint PropertyId;
        public PropertyKey(Guid formatId, uint propertyId) { FormatId = formatId; PropertyId = propertyId; }
    }

    [StructLayout(LayoutKind.Explicit, Size = 24)]
    public struct PropVariant {
        [FieldOffset(0)] public ushort VarType;
        [FieldOffset(8)] public IntPtr Pointer;
    }

    [ComImport, Guid("886D8EEB-8CF2-4446-8D02-CDBA1DBDCF99"),
     InterfaceType(ComInterfaceType.InterfaceIsIUnknown)]
    public interface IPropertyStore {
        [PreserveSig] int GetCount(out uint count);
        [PreserveSig] int GetAt(uint index, out PropertyKey key);
        [PreserveSig] int GetValue(ref PropertyKey key, out PropVariant value);
        [PreserveSig] int SetValue(ref PropertyKey key, ref PropVariant value);
        [PreserveSig] int Commit();
    }

    public static class ShortcutAppId {
        [DllImport("shell32.dll", CharSet = CharSet.Unicode, PreserveSig = false)]
        static extern void SHGetPropertyStoreFromParsingName(
            string path, IntPtr bindContext, int flags, ref Guid iid,
            [MarshalAs(UnmanagedType.Interface)] out IPropertyStore store);

        public static void Set(string shortcutPath, string appId) {
            Guid iid = typeof(IPropertyStore).GUID;
            IPropertyStore store;
            SHGetPropertyStoreFromParsingName(shortcutPath, IntPtr.Zero, 2, ref iid, out store);  // GPS_READWRITE
            PropertyKey key = new PropertyKey(new Guid("9F4C2855-9F79-4B39-A8D0-E1D42DE1D5F3"), 5);
            PropVariant value = new PropVariant();
            value.VarType = 31;  // VT_LPWSTR
            value.Pointer = Marshal.StringToCoTaskMemUni(appId);
            try {
                int hr = store.SetValue(ref key, ref value);
                if (hr != 0) { Marshal.ThrowExceptionForHR(hr); }
                hr = store.Commit();
                if (hr != 0) { Marshal.ThrowExceptionForHR(hr); }
            } finally {
                Marshal.FreeCoTaskMem(value.Pointer);
                Marshal.ReleaseComObject(store);
            }
        }
    }
}
"@

function Set-ShortcutAppId([string]$Path) {
    try {
        if (-not ("DemoFusionStudioInstaller.ShortcutAppId" -as [type])) {
            Add-Type -TypeDefinition $ShortcutIdCode -Language CSharp
        }
        [DemoFusionStudioInstaller.ShortcutAppId]::Set($Path, $AppUserModelId)
    } catch {
        Write-Warning "Could not tag $Path for taskbar grouping ($($_.Exception.Message)); the app still works."
    }
}

function New-Shortcut([string]$Path) {
    # pythonw.exe runs the window without a console; the .ico carries every size Windows asks for.
    $shell = New-Object -ComObject WScript.Shell
    $link = $shell.CreateShortcut($Path)
    $link.TargetPath = $EnvPythonW
    $link.Arguments = "-m demofusion_app"
    $link.WorkingDirectory = [Environment]::GetFolderPath("MyPictures")
    $link.IconLocation = "$IconFile,0"
    $link.Description = "${AppName}: high-resolution images with Stable Diffusion"
    $link.Save()
    Set-ShortcutAppId $Path
}

function Install-Shortcuts {
    Copy-Item -Force -Path (Join-Path $RepoRoot "resources\icons\$AppId.ico") -Destination $IconFile
    New-Shortcut $StartMenuLink
    New-Shortcut $DesktopLink
    Say "Added '$AppName' to the Start menu and the desktop"
}

function Remove-Shortcuts {
    foreach ($link in $StartMenuLink, $DesktopLink) {
        if (Test-Path $link) { Remove-Item -Force $link }
    }
    if (Test-Path $IconFile) { Remove-Item -Force $IconFile }
}

if ($Purge -and -not $Uninstall) { Fail "-Purge only goes with -Uninstall." }
if ($Cpu -and $Cuda) { Fail "Choose one of -Cpu and -Cuda." }

if ($Uninstall) {
    if (Test-Path $EnvDir) {
        # Refuse to delete anything that is not a Python environment.
        if (-not (Test-Path (Join-Path $EnvDir "pyvenv.cfg"))) { Fail "$EnvDir is not a Python environment; not deleting it." }
        Remove-Item -Recurse -Force $EnvDir
        Say "Removed $EnvDir"
    }
    if (-not $NoDesktop) { Remove-Shortcuts; Say "Removed the shortcuts" }
    if ($Purge) {
        # platformdirs keeps settings, presets, caches and logs in %LOCALAPPDATA%\demofusion-studio;
        # %APPDATA% would hold them if the app ever asks for roaming folders.
        foreach ($folder in (Join-Path $env:LOCALAPPDATA $AppId), (Join-Path $env:APPDATA $AppId)) {
            if (Test-Path $folder) { Remove-Item -Recurse -Force $folder; Say "Removed $folder" }
        }
        Say "Your pictures were kept."
    }
    if ((Test-Path $Prefix) -and -not (Get-ChildItem -Force $Prefix)) { Remove-Item -Force $Prefix }
    Say "$AppName is uninstalled."
    exit 0
}

if ($Update) {
    if (-not (Test-Path $EnvPython)) { Fail "There is no installation in $Prefix to update; run without -Update." }
} else {
    New-Environment
    Install-Torch
}
Install-Dependencies
Install-App
Test-App
if (-not $NoDesktop) { Install-Shortcuts }
Say "Done. Start $AppName from the Start menu."
