# certfleet: import a certificate into Cert:\LocalMachine\My and rebind an IIS site's HTTPS bindings.
# Run on the Windows host by certfleet (certfleet/connectors/servers/iis.py) through a PsExec-style service, as
# `powershell.exe -EncodedCommand`. The one value certfleet puts into this text is the base64 of a JSON object
# (only A-Z a-z 0-9 + / = inside single quotes), so a site name, path or thumbprint is data, never code. The
# PFX password arrives on standard input (base64, one line), never on the command line.
# Operations ($data.op): inspect (read the bindings on the port), apply (import, then compare-and-swap each
# binding from the thumbprint journalled before), undo (put the journalled thumbprints back; remove the
# imported certificate when certfleet added it and no binding uses it any more).
# Output: one line `CERTFLEET-RESULT <base64 JSON>`, or `CERTFLEET-ERROR <base64 JSON>` and exit code 1.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$CertfleetInput = '__CERTFLEET_INPUT__'

function Write-Marker([string]$kind, $value) {
    $json = ConvertTo-Json -InputObject $value -Depth 6 -Compress
    [Console]::Out.WriteLine('CERTFLEET-' + $kind + ' ' + [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes($json)))
}

function Get-Hash($binding) {
    if ($null -eq $binding.CertificateHash -or $binding.CertificateHash.Length -eq 0) { return '' }
    return ([BitConverter]::ToString($binding.CertificateHash)) -replace '-', ''
}

function ConvertTo-HashBytes([string]$hex) {
    $bytes = New-Object byte[] ($hex.Length / 2)
    for ($i = 0; $i -lt $bytes.Length; $i++) { $bytes[$i] = [Convert]::ToByte($hex.Substring(2 * $i, 2), 16) }
    return ,$bytes
}

function Get-PortBindings($site, [int]$port) {
    $found = @()
    foreach ($b in $site.Bindings) {
        if ($b.Protocol -ne 'https' -or $null -eq $b.EndPoint -or $b.EndPoint.Port -ne $port) { continue }
        if (([int]$b.SslFlags -band 2) -ne 0) {
            throw ('the binding ' + $b.BindingInformation + ' uses the Centralized Certificate Store: certfleet binds certificates from Cert:\LocalMachine\My only')
        }
        $found += $b
    }
    return ,$found
}

function Get-BindingState($b) {
    return [ordered]@{
        info = [string]$b.BindingInformation
        host = [string]$b.Host
        sni = (([int]$b.SslFlags -band 1) -ne 0)
        thumbprint = (Get-Hash $b)
        store = [string]$b.CertificateStoreName
    }
}

function Open-Store([string]$name, [string]$mode) {
    $store = New-Object System.Security.Cryptography.X509Certificates.X509Store($name, 'LocalMachine')
    $store.Open([System.Security.Cryptography.X509Certificates.OpenFlags]$mode)
    return $store
}

function Test-InStore([string]$thumbprint) {
    $store = Open-Store 'My' 'ReadOnly'
    try { return [bool]($store.Certificates | Where-Object { $_.Thumbprint -eq $thumbprint }) } finally { $store.Close() }
}

try {
    $data = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($CertfleetInput)) | ConvertFrom-Json
    Add-Type -Path (Join-Path $env:windir 'System32\inetsrv\Microsoft.Web.Administration.dll')
    $manager = New-Object Microsoft.Web.Administration.ServerManager
    $site = $manager.Sites[[string]$data.site]
    if ($null -eq $site) { throw ('IIS has no site named ''' + $data.site + '''') }
    $port = [int]$data.port
    $thumbprint = [string]$data.thumbprint

    if ($data.op -eq 'inspect') {
        $states = @(foreach ($b in (Get-PortBindings $site $port)) { Get-BindingState $b })
        Write-Marker 'RESULT' ([ordered]@{ bindings = $states; present = (Test-InStore $thumbprint) })
        exit 0
    }

    if ($data.op -eq 'apply') {
        $secret = [Console]::In.ReadLine()
        if ([string]::IsNullOrEmpty($secret)) { throw 'no PFX password arrived on standard input' }
        $password = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($secret))
        if (-not (Test-InStore $thumbprint)) {
            $flags = [System.Security.Cryptography.X509Certificates.X509KeyStorageFlags]'MachineKeySet,PersistKeySet'
            $all = New-Object System.Security.Cryptography.X509Certificates.X509Certificate2Collection
            $all.Import([string]$data.pfx, $password, $flags)
            $leaf = $all | Where-Object { $_.Thumbprint -eq $thumbprint } | Select-Object -First 1
            if ($null -eq $leaf) { throw ('the PFX ' + $data.pfx + ' holds no certificate with thumbprint ' + $thumbprint) }
            if (-not $leaf.HasPrivateKey) { throw ('the PFX ' + $data.pfx + ' holds no private key for ' + $thumbprint) }
            $my = Open-Store 'My' 'ReadWrite'
            try { $my.Add($leaf) } finally { $my.Close() }
            $ca = Open-Store 'CA' 'ReadWrite'
            try { foreach ($c in $all) { if ($c.Thumbprint -ne $thumbprint -and $c.Subject -ne $c.Issuer) { $ca.Add($c) } } } finally { $ca.Close() }
        }
        $expected = @{}
        foreach ($u in @($data.undo.bindings)) { $expected[[string]$u.info] = [string]$u.thumbprint }
        $changed = @()
        foreach ($b in (Get-PortBindings $site $port)) {
            $info = [string]$b.BindingInformation
            if (-not $expected.ContainsKey($info)) {
                throw ('the binding ' + $info + ' appeared after certfleet read the bindings: deploy again')
            }
            $now = Get-Hash $b
            if ($now -ne $expected[$info] -and $now -ne $thumbprint) {
                throw ('the binding ' + $info + ' changed to ' + $now + ' after certfleet read it (' + $expected[$info] + '): deploy again')
            }
            $b.CertificateHash = (ConvertTo-HashBytes $thumbprint)
            $b.CertificateStoreName = 'My'
            $changed += $info
        }
        if ($changed.Count -eq 0) { throw ('the site has no https binding on port ' + $port) }
        $manager.CommitChanges()
        Write-Marker 'RESULT' ([ordered]@{ changed = $changed })
        exit 0
    }

    if ($data.op -eq 'undo') {
        $restored = @()
        $current = @{}
        foreach ($b in (Get-PortBindings $site $port)) { $current[[string]$b.BindingInformation] = $b }
        foreach ($u in @($data.undo.bindings)) {
            $b = $current[[string]$u.info]
            if ($null -eq $b) { continue }  # the binding was removed since: nothing to put back
            $now = Get-Hash $b
            if ($now -eq [string]$u.thumbprint) { continue }  # already back
            if ($now -ne $thumbprint) {
                throw ('the binding ' + $u.info + ' now uses ' + $now + ', neither certfleet''s ' + $thumbprint + ' nor the previous ' + $u.thumbprint + ': left as it is')
            }
            if ([string]$u.thumbprint -eq '') { $b.CertificateHash = $null } else {
                $b.CertificateHash = (ConvertTo-HashBytes ([string]$u.thumbprint))
                $b.CertificateStoreName = $(if ([string]$u.store) { [string]$u.store } else { 'My' })
            }
            $restored += [string]$u.info
        }
        if ($restored.Count -gt 0) { $manager.CommitChanges() }
        $removed = $false
        if ($data.undo.imported) {
            $used = $false
            foreach ($s in $manager.Sites) { foreach ($b in $s.Bindings) { if ((Get-Hash $b) -eq $thumbprint) { $used = $true } } }
            if (-not $used) {
                $my = Open-Store 'My' 'ReadWrite'
                try {
                    foreach ($c in @($my.Certificates | Where-Object { $_.Thumbprint -eq $thumbprint })) { $my.Remove($c); $removed = $true }
                } finally { $my.Close() }
            }
        }
        Write-Marker 'RESULT' ([ordered]@{ restored = $restored; removed = $removed })
        exit 0
    }
    throw ('unknown operation ' + $data.op)
} catch {
    Write-Marker 'ERROR' ([ordered]@{ message = [string]$_.Exception.Message })
    exit 1
}
