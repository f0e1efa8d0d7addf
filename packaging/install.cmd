@echo off
rem DemoFusion Studio: double-click to install for the current user (see install.ps1 for options).
rem Arguments are passed on, e.g.  install.cmd -Uninstall
powershell.exe -NoProfile -ExecutionPolicy Bypass -File "%~dp0install.ps1" %*
set "STATUS=%ERRORLEVEL%"
echo.
pause
exit /b %STATUS%
