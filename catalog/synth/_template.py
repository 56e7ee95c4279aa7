"""Skeleton of an L2A METADATA.XML (element paths of DLR's ground processor output).

Trimmed from a real L2A METADATA.XML (schema 00.02.00): the orbit/attitude,
line-time, RPC and band-statistics sections are left out, band and file lists
hold one entry each and are rebuilt per product. Values are overwritten.
"""

TEMPLATE = """\
<level_X xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="metadata_Lx_00-02-00.xsd">
  <metadata>
    <schema>
      <copyright>(c) DLR EnMAP 2019</copyright>
      <versionSchema>00.02.00</versionSchema>
      <name>metadata_Lx_00-02-00.xsd</name>
      <crc>537B11B4</crc>
      <processingLevel>L2A</processingLevel>
    </schema>
    <name>{STEM}-METADATA.XML</name>
    <comment>EnMAP Level 2A Product of datatake 326721, tile 1</comment>
    <copyright>(c) DLR EnMAP 2019</copyright>
    <citation>DLR (2020): EnMAP Product 000326721_01_2A_20170626T112025_000204_200406+U0BLNNTS300G. doi:10.15489/rlyibn8gjc58</citation>
  </metadata>
  <processing>
    <terrainCorrection>Yes</terrainCorrection>
    <ozoneValue>300</ozoneValue>
    <season>summer</season>
    <productFormat>GeoTIFF+Metadata</productFormat>
    <mapProjection>UTM_Zone_of_Scene_Center</mapProjection>
    <imageResampling>Bilinear_Interpolation</imageResampling>
    <DEMDBVersion>SRTM_C1ARC</DEMDBVersion>
    <correctionType>Land_Mode</correctionType>
    <cirrusHazeRemoval>No</cirrusHazeRemoval>
    <bandInterpolation>No</bandInterpolation>
    <waterType>Turbid</waterType>
  </processing>
  <base>
    <spatialCoverage>
      <boundingPolygon>
        <point>
          <frame>upper_left</frame>
          <latitude unit="DEG">47.7875252</latitude>
          <longitude unit="DEG">10.7960234</longitude>
          <utcTime>2017-06-26T10:20:20.999936Z</utcTime>
        </point>
        <point>
          <frame>lower_left</frame>
          <latitude unit="DEG">47.5192797</latitude>
          <longitude unit="DEG">10.7108641</longitude>
          <utcTime>2017-06-26T10:20:25.545157Z</utcTime>
        </point>
        <point>
          <frame>lower_right</frame>
          <latitude unit="DEG">47.4554646</latitude>
          <longitude unit="DEG">11.0813528</longitude>
          <utcTime>2017-06-26T10:20:25.545157Z</utcTime>
        </point>
        <point>
          <frame>upper_right</frame>
          <latitude unit="DEG">47.7235135</latitude>
          <longitude unit="DEG">11.1687202</longitude>
          <utcTime>2017-06-26T10:20:20.999936Z</utcTime>
        </point>
        <point>
          <frame>upper_left</frame>
          <latitude unit="DEG">47.787525214</latitude>
          <longitude unit="DEG">10.796023441</longitude>
          <utcTime>2017-06-26T10:20:20.999936Z</utcTime>
        </point>
        <point>
          <frame>center</frame>
          <latitude unit="DEG">47.6216059</latitude>
          <longitude unit="DEG">10.9392424</longitude>
          <utcTime>2017-06-26T10:20:23.272547Z</utcTime>
        </point>
      </boundingPolygon>
    </spatialCoverage>
    <temporalCoverage>
      <startTime>2017-06-26T10:20:20.999936Z</startTime>
      <stopTime>2017-06-26T10:20:25.545157Z</stopTime>
    </temporalCoverage>
    <revision>00.02.04</revision>
    <altitudeCoverage>628888.37</altitudeCoverage>
    <sphere>earth</sphere>
    <format>ENMAP_L2A</format>
    <level>L2A</level>
    <size>663572413</size>
    <archivedVersion>00.02.04</archivedVersion>
  </base>
  <specific>
    <spatialCoverageOfDatatake>
      <boundingPolygon>
        <point>
          <frame>upper_left</frame>
          <latitude unit="DEG">47.7873372587</latitude>
          <longitude unit="DEG">10.7962026829</longitude>
          <utcTime>2017-06-26T10:20:20.999936Z</utcTime>
        </point>
        <point>
          <frame>lower_left</frame>
          <latitude unit="DEG">46.9816134114</latitude>
          <longitude unit="DEG">10.5260205351</longitude>
          <utcTime>2017-06-26T10:20:34.512331Z</utcTime>
        </point>
        <point>
          <frame>lower_right</frame>
          <latitude unit="DEG">46.9181474402</latitude>
          <longitude unit="DEG">10.8930286214</longitude>
          <utcTime>2017-06-26T10:20:34.512331Z</utcTime>
        </point>
        <point>
          <frame>upper_right</frame>
          <latitude unit="DEG">47.723338236</latitude>
          <longitude unit="DEG">11.1687523467</longitude>
          <utcTime>2017-06-26T10:20:20.999936Z</utcTime>
        </point>
        <point>
          <frame>upper_left</frame>
          <latitude unit="DEG">47.7873372587</latitude>
          <longitude unit="DEG">10.7962026829</longitude>
          <utcTime>2017-06-26T10:20:20.999936Z</utcTime>
        </point>
        <point>
          <frame>center</frame>
          <latitude unit="DEG">47.3526090866</latitude>
          <longitude unit="DEG">10.8460010465</longitude>
          <utcTime>2017-06-26T10:20:27.756134000</utcTime>
        </point>
      </boundingPolygon>
    </spatialCoverageOfDatatake>
    <qualityFlag>
      <spare_1>-999</spare_1>
      <spare_2>-999</spare_2>
      <spare_3>-999</spare_3>
      <sensorLogVNIR>-999</sensorLogVNIR>
      <processorLogVNIR>0</processorLogVNIR>
      <overallQualityVNIR>0</overallQualityVNIR>
      <deadPixelsVNIR>0</deadPixelsVNIR>
      <defectivePixelsVNIR>0</defectivePixelsVNIR>
      <generalArtifactsVNIR>0</generalArtifactsVNIR>
      <saturationCrosstalkVNIR>0</saturationCrosstalkVNIR>
      <stripingBandingVNIR>0</stripingBandingVNIR>
      <qualityRadiometryVNIR>0</qualityRadiometryVNIR>
      <smileIndicationVNIR>-999</smileIndicationVNIR>
      <sensorLogSWIR>-999</sensorLogSWIR>
      <processorLogSWIR>0</processorLogSWIR>
      <deadPixelsSWIR>0</deadPixelsSWIR>
      <defectivePixelsSWIR>0</defectivePixelsSWIR>
      <generalArtifactsSWIR>0</generalArtifactsSWIR>
      <saturationCrosstalkSWIR>0</saturationCrosstalkSWIR>
      <stripingBandingSWIR>0</stripingBandingSWIR>
      <overallQualitySWIR>0</overallQualitySWIR>
      <qualityRadiometrySWIR>0</qualityRadiometrySWIR>
      <smileIndicationSWIR>-999</smileIndicationSWIR>
      <overallQuality>1</overallQuality>
      <numTilesUsed>3</numTilesUsed>
      <levelOfRejection>2</levelOfRejection>
      <numPointsGCP>607</numPointsGCP>
      <numPointsICP>2271</numPointsICP>
      <numPointsAll>2878</numPointsAll>
      <numPointsDiscardedGCP>3</numPointsDiscardedGCP>
      <orthoResidual>10</orthoResidual>
      <orthoResidual_x>9</orthoResidual_x>
      <orthoResidual_y>5</orthoResidual_y>
      <orthoMean>0</orthoMean>
      <orthoMean_x>0</orthoMean_x>
      <orthoMean_y>0</orthoMean_y>
      <orthoRMSE>39</orthoRMSE>
      <orthoRMSE_x>9</orthoRMSE_x>
      <orthoRMSE_y>38</orthoRMSE_y>
      <sceneSZA>26.961616</sceneSZA>
      <qualityAtmosphere>1</qualityAtmosphere>
      <orthoTerrain>0</orthoTerrain>
      <sceneSunglint>-999</sceneSunglint>
      <cloudCover>0</cloudCover>
      <hazeCover>0</hazeCover>
      <cirrusCover>0</cirrusCover>
      <snowCover>0</snowCover>
      <waterCover>2</waterCover>
      <cloudShadow>8</cloudShadow>
      <noncloudShadow>0</noncloudShadow>
      <sceneWV>2159</sceneWV>
      <sceneAOT>190</sceneAOT>
      <sceneAtmParam>0</sceneAtmParam>
      <sceneTerrain>0</sceneTerrain>
    </qualityFlag>
    <instrumentStatus>
      <statusOK>true</statusOK>
      <statusVNIR>on</statusVNIR>
      <statusSWIR>on</statusSWIR>
      <configVNIR>standard</configVNIR>
      <configSWIR>standard</configSWIR>
      <statusSCM>OK</statusSCM>
      <statusDiffuserProtectionHatch>OK</statusDiffuserProtectionHatch>
      <statusSunDiffuserHatch>OK</statusSunDiffuserHatch>
      <emergencyStatusOfSCM>0</emergencyStatusOfSCM>
      <emergencyStatusOfSSM>0</emergencyStatusOfSSM>
      <emergencyStatusOfSDH>0</emergencyStatusOfSDH>
      <SWIRAOrSWIRBSelected>SWIRA</SWIRAOrSWIRBSelected>
      <mcsSequenceType>1</mcsSequenceType>
    </instrumentStatus>
    <productQuality>
      <screeningResult>
        <status>FAILED</status>
        <failedGroups>STATUS</failedGroups>
      </screeningResult>
      <screeningResultTemp>
        <listOfTemps>
          <parameter name="VNIR_HK_SA_T7_CIS_PT_1">
            <description>Temperature VNIR Sensor Assembly, PTAT 1</description>
            <device>VNIR</device>
            <units>degC</units>
            <status>OK</status>
            <value>21.8</value>
            <minValue>22.4</minValue>
            <maxValue>23.2</maxValue>
          </parameter>
          <parameter name="SWIR_TFPA1">
            <description>SWIR FPA temperature 1</description>
            <device>SWIR</device>
            <units>degC</units>
            <status>OK</status>
            <value>21.1</value>
            <minValue>20.4</minValue>
            <maxValue>21.9</maxValue>
          </parameter>
        </listOfTemps>
        <status>OK</status>
      </screeningResultTemp>
      <screeningResultCurr>
        <listOfCurrents>
          <parameter name="CCS_01_I">
            <description>Current CCS 01</description>
            <device>IPU</device>
            <units>mA</units>
            <status>OK</status>
            <value>310.3</value>
            <minValue>308.5</minValue>
            <maxValue>311.9</maxValue>
          </parameter>
        </listOfCurrents>
        <status>OK</status>
      </screeningResultCurr>
      <screeningResultVolt>
        <listOfVoltages>
          <parameter name="CCS_01_V">
            <description>Voltage CCS 01</description>
            <device>IPU</device>
            <units>V</units>
            <status>OK</status>
            <value>5.1</value>
            <minValue>5.0</minValue>
            <maxValue>5.2</maxValue>
          </parameter>
        </listOfVoltages>
        <status>OK</status>
      </screeningResultVolt>
      <screeningResultDevStatus>
        <listOfDevStatus>
          <parameter name="SW_Op_HK_Status">
            <description>Validity status of HK channels ICPU, IPU, VNIR, and SWIR</description>
            <device>OTHER</device>
            <units>1</units>
            <status>OK</status>
            <info />
            <value>15</value>
            <minValue>15</minValue>
            <maxValue>15</maxValue>
          </parameter>
          <parameter name="TCS_Inhibit_Health_A">
            <description>Health indication array of cavity heaters</description>
            <device>OTHER</device>
            <units>1</units>
            <status>FAILED</status>
            <info>Major deviations from reference value (100.0 %)</info>
            <value>0</value>
            <minValue>0</minValue>
            <maxValue>0</maxValue>
          </parameter>
          <parameter name="TCS_Sensor_Health_A">
            <description>Sensor health indication array</description>
            <device>OTHER</device>
            <units>1</units>
            <status>FAILED</status>
            <info>Major deviations from reference value (100.0 %)</info>
            <value>0</value>
            <minValue>0</minValue>
            <maxValue>0</maxValue>
          </parameter>
          <parameter name="IPU_Status_8_A">
            <description>Status of OTA level 2</description>
            <device>OTHER</device>
            <units>1</units>
            <status>OK</status>
            <info />
            <value>0</value>
            <minValue>0</minValue>
            <maxValue>0</maxValue>
          </parameter>
        </listOfDevStatus>
        <status>FAILED</status>
      </screeningResultDevStatus>
    </productQuality>
    <vnirProductQuality>
      <vnirProductStatus>OK</vnirProductStatus>
      <vnirDarkBeforeQuality>
        <available>yes</available>
        <screeningResult>OK</screeningResult>
      </vnirDarkBeforeQuality>
      <vnirDarkAfterQuality>
        <available>yes</available>
        <screeningResult>OK</screeningResult>
      </vnirDarkAfterQuality>
      <numChannelsExpected>88</numChannelsExpected>
      <expectedChannelsList>1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,80,82,84,86,87,89,91,93,95,96</expectedChannelsList>
      <numChannelsMissing>0</numChannelsMissing>
      <missingChannelsList />
    </vnirProductQuality>
    <swirProductQuality>
      <swirProductStatus>OK</swirProductStatus>
      <swirDarkBeforeQuality>
        <available>yes</available>
        <screeningResult>OK</screeningResult>
      </swirDarkBeforeQuality>
      <swirDarkAfterQuality>
        <available>yes</available>
        <screeningResult>OK</screeningResult>
      </swirDarkAfterQuality>
      <numChannelsExpected>130</numChannelsExpected>
      <expectedChannelsList>79,81,83,85,88,90,92,94,97,98,99,100,101,102,103,104,105,106,107,108,109,110,111,112,113,114,115,116,117,118,119,120,121,122,123,124,125,126,127,128,129,130,131,132,133,134,135,136,137,138,139,140,141,142,143,144,145,146,147,148,149,150,151,152,153,154,155,156,157,158,159,160,161,162,163,164,165,166,167,168,169,170,171,172,173,174,175,176,177,178,179,180,181,182,183,184,185,186,187,188,189,190,191,192,193,194,195,196,197,198,199,200,201,202,203,204,205,206,207,208,209,210,211,212,213,214,215,216,217,218</expectedChannelsList>
      <numChannelsMissing>0</numChannelsMissing>
      <missingChannelsList />
    </swirProductQuality>
    <downlink>
      <dtakeNumMissingIsps>0</dtakeNumMissingIsps>
      <dtakeNumErrorIsps>0</dtakeNumErrorIsps>
    </downlink>
    <auxDataVersion>
      <orbitVersion>00.00.00</orbitVersion>
      <attitudeVersion>00.00.00</attitudeVersion>
      <calTabAtmSpecVersion>01.00.00</calTabAtmSpecVersion>
      <calTabGeoVersion>01.00.00</calTabGeoVersion>
      <calTabRadVersion>01.00.00</calTabRadVersion>
      <calTabLinearityVersion>01.00.00</calTabLinearityVersion>
      <calTabDeepSpaceVersion>01.00.00</calTabDeepSpaceVersion>
      <calTabDPMVersion>01.00.00</calTabDPMVersion>
      <refTabDarkVersion>01.00.00</refTabDarkVersion>
    </auxDataVersion>
    <inputDatatake>
      <datatakeAssemblyTime>2017-06-26T12:20:25.000000Z</datatakeAssemblyTime>
      <datatakeRevision>07.00.32</datatakeRevision>
    </inputDatatake>
    <missionPhase>pre-launch</missionPhase>
    <processingCenter>OP</processingCenter>
    <processingNode>latest.shockley</processingNode>
    <processingDateTime>2020-04-06T20:19:30.939073Z</processingDateTime>
    <archivingStation>DUMMY</archivingStation>
    <archivingDateTime>0001-01-01T00:00:00.000000Z</archivingDateTime>
    <receivingStations>NSG</receivingStations>
    <receivingDateTime>2017-06-26T11:20:25.000000Z</receivingDateTime>
    <mission>EnMAP</mission>
    <satelliteID>01</satelliteID>
    <sensor>HSI</sensor>
    <datatakeID>0000326721</datatakeID>
    <imageID>000000123</imageID>
    <cyclogramType>EARTH</cyclogramType>
    <cyclogramVersion>000</cyclogramVersion>
    <MCSequenceId>001</MCSequenceId>
    <macrocommandVersion>000</macrocommandVersion>
    <numberOfSWIRBands>130</numberOfSWIRBands>
    <numberOfVNIRBands>88</numberOfVNIRBands>
    <acquisitionType>EARTH</acquisitionType>
    <acquisitionSubtype>earth</acquisitionSubtype>
    <productType>STANDARD_ALL</productType>
    <compressionType>COMPRESSED</compressionType>
    <datatakeStart>2017-06-26T10:20:20.999936Z</datatakeStart>
    <datatakeStop>2017-06-26T10:20:34.512331Z</datatakeStop>
    <backgroundValue>0</backgroundValue>
    <tileID>01</tileID>
    <numberOfTiles>03</numberOfTiles>
    <widthOfScene unit="pixel">1000</widthOfScene>
    <heightOfScene unit="pixel">1024</heightOfScene>
    <status>NOMINAL</status>
    <orbitNo>13842</orbitNo>
    <meanGroundElevation>1039.77677701</meanGroundElevation>
    <digitalElevationModelDatabase>SRTM_C1ARC</digitalElevationModelDatabase>
    <digitalElevationModelDatabaseAccuracy>16</digitalElevationModelDatabaseAccuracy>
    <referenceDatabase>S2</referenceDatabase>
    <referenceImageDatabaseAccuracy>10</referenceImageDatabaseAccuracy>
    <sunElevationAngle>
      <upper_left unit="DEG">62.843017</upper_left>
      <upper_right unit="DEG">63.025996</upper_right>
      <lower_right unit="DEG">63.232013</lower_right>
      <lower_left unit="DEG">63.048052</lower_left>
      <center unit="DEG">63.038384</center>
    </sunElevationAngle>
    <sunAzimuthAngle>
      <upper_left unit="DEG">148.98072</upper_left>
      <upper_right unit="DEG">149.614311</upper_right>
      <lower_right unit="DEG">149.224083</lower_right>
      <lower_left unit="DEG">148.59262</lower_left>
      <center unit="DEG">149.106702</center>
    </sunAzimuthAngle>
    <acrossOffNadirAngle>
      <upper_left unit="DEG">1.27641076292</upper_left>
      <upper_right unit="DEG">-1.35358251158</upper_right>
      <lower_right unit="DEG">-1.4507597324</lower_right>
      <lower_left unit="DEG">1.17928885285</lower_left>
      <center unit="DEG">-0.0871606570525</center>
    </acrossOffNadirAngle>
    <alongOffNadirAngle>
      <upper_left unit="DEG">-0.0692040225255</upper_left>
      <upper_right unit="DEG">-0.0695301149423</upper_right>
      <lower_right unit="DEG">-0.167785438271</lower_right>
      <lower_left unit="DEG">-0.16870825914</lower_left>
      <center unit="DEG">-0.11880695872</center>
    </alongOffNadirAngle>
    <sceneAzimuthAngle>
      <upper_left unit="DEG">14.2906888082</upper_left>
      <upper_right unit="DEG">14.2906888082</upper_right>
      <lower_right unit="DEG">14.2149804324</lower_right>
      <lower_left unit="DEG">14.2149804324</lower_left>
      <center unit="DEG">14.2528346203</center>
    </sceneAzimuthAngle>
    <orbitDirection>DESCENDING</orbitDirection>
    <pixelSize>30</pixelSize>
    <biomeType>Temperate Broadleaf and Mixed Forests</biomeType>
    <processible>1</processible>
    <orbitType>determined</orbitType>
    <acquisitionMode>earth</acquisitionMode>
    <code>L2A</code>
    <URLToProductType>enmap.org/product_STANDARD_ALL</URLToProductType>
    <spatialCoverageOfOrthoScene>
      <boundingPolygon>
        <point>
          <frame>upper_left</frame>
          <latitude unit="DEG">0.000431</latitude>
          <longitude unit="DEG">4.5113521</longitude>
          <utcTime>NA</utcTime>
        </point>
        <point>
          <frame>lower_left</frame>
          <latitude unit="DEG">0.0004281</latitude>
          <longitude unit="DEG">4.511352</longitude>
          <utcTime>NA</utcTime>
        </point>
        <point>
          <frame>lower_right</frame>
          <latitude unit="DEG">0.000428</latitude>
          <longitude unit="DEG">4.5113561</longitude>
          <utcTime>NA</utcTime>
        </point>
        <point>
          <frame>upper_right</frame>
          <latitude unit="DEG">0.000431</latitude>
          <longitude unit="DEG">4.5113562</longitude>
          <utcTime>NA</utcTime>
        </point>
        <point>
          <frame>upper_left</frame>
          <latitude unit="DEG">0.000431</latitude>
          <longitude unit="DEG">4.5113521</longitude>
          <utcTime>NA</utcTime>
        </point>
        <point>
          <frame>center</frame>
          <latitude unit="DEG">0.0004295</latitude>
          <longitude unit="DEG">4.5113541</longitude>
          <utcTime>NA</utcTime>
        </point>
      </boundingPolygon>
    </spatialCoverageOfOrthoScene>
    <bandCharacterisation>
      <bandID number="1">
        <wavelengthCenterOfBand>423.03</wavelengthCenterOfBand>
        <FWHMOfBand>6.93</FWHMOfBand>
        <GainOfBand>0.0001</GainOfBand>
        <OffsetOfBand>0</OffsetOfBand>
      </bandID>
    </bandCharacterisation>
    <pixelSizeOfOrthoScene>30</pixelSizeOfOrthoScene>
    <widthOfOrthoScene>1128</widthOfOrthoScene>
    <heightOfOrthoScene>1212</heightOfOrthoScene>
    <meanSlope>14.59</meanSlope>
  </specific>
  <product>
    <image>
      <merge>
        <channels>218</channels>
        <name>{STEM}-SPECTRAL_IMAGE.TIF</name>
        <size unit="Kbyte">596082</size>
        <version>00.02.04</version>
        <format>binary</format>
        <dimension>
          <columns>1128</columns>
          <rows>1212</rows>
        </dimension>
        <dimensionGeographic>
          <longitude unit="DEG">0.3320606</longitude>
          <latitude unit="DEG">0.3320606</latitude>
        </dimensionGeographic>
        <qlChannelsSWIR>
          <red>2201</red>
          <green>1645.3</green>
          <blue>1051.3</blue>
        </qlChannelsSWIR>
        <qlChannelsVNIR>
          <red>847.1</red>
          <green>671.21</green>
          <blue>548.06</blue>
        </qlChannelsVNIR>
      </merge>
    </image>
    <quicklook>
      <vnir>
        <channels>3</channels>
        <qlChannels>
          <red>847.1</red>
          <green>671.21</green>
          <blue>548.06</blue>
        </qlChannels>
        <name>{STEM}-QL_VNIR.TIF</name>
        <size unit="Kbyte">8212</size>
        <version>00.02.04</version>
        <format>binary</format>
        <dimension>
          <columns>1128</columns>
          <rows>1212</rows>
        </dimension>
        <dimensionGeographic>
          <longitude unit="DEG">0.332060614</longitude>
          <latitude unit="DEG">0.332060614</latitude>
        </dimensionGeographic>
      </vnir>
      <swir>
        <channels>3</channels>
        <qlChannels>
          <red>2201</red>
          <green>1645.3</green>
          <blue>1051.3</blue>
        </qlChannels>
        <name>{STEM}-QL_SWIR.TIF</name>
        <size unit="Kbyte">8212</size>
        <version>00.02.04</version>
        <format>binary</format>
        <dimension>
          <columns>1128</columns>
          <rows>1212</rows>
        </dimension>
        <dimensionGeographic>
          <longitude unit="DEG">0.332060614</longitude>
          <latitude unit="DEG">0.332060614</latitude>
        </dimensionGeographic>
      </swir>
    </quicklook>
    <matching>
      <match ident="16">
        <points>227</points>
        <percent>71.4</percent>
      </match>
      <match ident="8">
        <points>871</points>
        <percent>84.4</percent>
      </match>
      <match ident="4">
        <points>3082</points>
        <percent>74.7</percent>
      </match>
      <match ident="2">
        <points>7707</points>
        <percent>66.7</percent>
      </match>
      <match ident="1">
        <points>10003</points>
        <percent>59.1</percent>
      </match>
      <pyramidLevel>16</pyramidLevel>
    </matching>
    <ortho>
      <projection>UTM_Zone32_North</projection>
      <resolution>30</resolution>
      <resampling>bilinear</resampling>
    </ortho>
    <productFileInformation>
      <file number="1">
        <name>{STEM}-METADATA.XML</name>
        <size unit="Kbyte">4181</size>
        <version>00.02.04</version>
        <format>xml</format>
      </file>
    </productFileInformation>
  </product>
</level_X>
"""
